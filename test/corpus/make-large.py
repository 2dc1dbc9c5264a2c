#!/usr/bin/env python3
"""Write the corpus's large document and what it must convert to.

    python3 make-large.py OUTDIR

writes OUTDIR/90-large.md (about 1 MB of Markdown: a long
operations log of numbered sections) and OUTDIR/90-large.storage, the
storage format the converter must produce for it.  The expected output
is built here from the same pieces, not by the converter, so the test
compares the converter against an independent spelling of the mapping
for the constructs used: headings, emphasis, code spans, links, tight
bullet lists, tables with alignment, fenced code (with "]]>" in it),
task lists and GitHub alerts.  The output is the same on every run.

test/unit/unit.mk runs this before test_storage; the generated files are
not committed (they would double the corpus's size).
"""

import os
import sys

SECTIONS = 1920

# language written in the fence -> the code macro's language, or None
FENCES = [("sql", "sql"), ("bash", "bash"), ("py", "python"), ("", None),
          ("brainfuck", None)]
ALERTS = [("NOTE", "info"), ("TIP", "tip"), ("IMPORTANT", "info"),
          ("WARNING", "note"), ("CAUTION", "warning")]
HOSTS = ["db-eu-1", "db-us-2", "db-ap-3", "worker-7"]


def section(i, task_id):
    """Markdown and expected storage of section i; task ids start at task_id."""
    host = HOSTS[i % len(HOSTS)]
    fence, language = FENCES[i % len(FENCES)]
    alert, panel = ALERTS[i % len(ALERTS)]
    rows = 3 + i % 3
    md = []
    st = []

    md.append("## Entry %d: %s\n\n" % (i, host))
    st.append("<h2>Entry %d: %s</h2>\n" % (i, host))

    md.append("At step %d the *queue* on `%s` held **%d** rows & the "
              "[dashboard](https://grafana.example.com/d/%d?from=now-1h&to=now) "
              "showed <%d> retries.\n\n" % (i, host, i * 7 % 1000, i, i % 13))
    st.append("<p>At step %d the <em>queue</em> on <code>%s</code> held "
              "<strong>%d</strong> rows &amp; the "
              "<a href=\"https://grafana.example.com/d/%d?from=now-1h&amp;to=now\">"
              "dashboard</a> showed &lt;%d&gt; retries.</p>\n"
              % (i, host, i * 7 % 1000, i, i % 13))

    md.append("- checked `pg_stat_activity`\n- restarted the worker %d time%s\n"
              "- ~~paged~~ noted it\n\n" % (i % 4, "" if i % 4 == 1 else "s"))
    st.append("<ul><li>checked <code>pg_stat_activity</code></li>"
              "<li>restarted the worker %d time%s</li>"
              "<li><del>paged</del> noted it</li></ul>\n"
              % (i % 4, "" if i % 4 == 1 else "s"))

    md.append("| Metric | Before | After |\n|:-------|:------:|------:|\n")
    st.append("<table><tbody><tr><th>Metric</th>"
              "<th style=\"text-align: center;\">Before</th>"
              "<th style=\"text-align: right;\">After</th></tr>")
    for r in range(rows):
        md.append("| m%d | %d | %d |\n" % (r, (i + r) * 3, (i * r) % 97))
        st.append("<tr><td>m%d</td><td style=\"text-align: center;\">%d</td>"
                  "<td style=\"text-align: right;\">%d</td></tr>"
                  % (r, (i + r) * 3, (i * r) % 97))
    md.append("\n")
    st.append("</tbody></table>\n")

    code = "SELECT count(*) FROM cfdw.queue WHERE id > %d;\n-- x[y[%d]]>0" % (i, i)
    md.append("```%s\n%s\n```\n\n" % (fence, code))
    st.append("<ac:structured-macro ac:name=\"code\" ac:schema-version=\"1\">")
    if language:
        st.append("<ac:parameter ac:name=\"language\">%s</ac:parameter>" % language)
    st.append("<ac:plain-text-body><![CDATA[%s]]></ac:plain-text-body>"
              "</ac:structured-macro>\n"
              % code.replace("]]>", "]]]]><![CDATA[>"))

    md.append("- [x] logged entry %d\n- [ ] follow up with %s\n\n" % (i, host))
    st.append("<ac:task-list>"
              "<ac:task><ac:task-id>%d</ac:task-id>"
              "<ac:task-status>complete</ac:task-status>"
              "<ac:task-body>logged entry %d</ac:task-body></ac:task>"
              "<ac:task><ac:task-id>%d</ac:task-id>"
              "<ac:task-status>incomplete</ac:task-status>"
              "<ac:task-body>follow up with %s</ac:task-body></ac:task>"
              "</ac:task-list>\n" % (task_id, i, task_id + 1, host))

    md.append("> [!%s]\n> Entry %d is %s.\n\n"
              % (alert, i, "closed" if i % 2 else "open"))
    st.append("<ac:structured-macro ac:name=\"%s\" ac:schema-version=\"1\">"
              "<ac:rich-text-body><p>Entry %d is %s.</p></ac:rich-text-body>"
              "</ac:structured-macro>\n"
              % (panel, i, "closed" if i % 2 else "open"))
    return "".join(md), "".join(st), task_id + 2


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-large.py OUTDIR")
    outdir = sys.argv[1]
    md = ["# Operations log, generated\n\n"]
    st = ["<h1>Operations log, generated</h1>\n"]
    task_id = 1
    for i in range(1, SECTIONS + 1):
        m, s, task_id = section(i, task_id)
        md.append(m)
        st.append(s)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "90-large.md"), "w", newline="\n") as f:
        f.write("".join(md))
    with open(os.path.join(outdir, "90-large.storage"), "w", newline="\n") as f:
        f.write("".join(st))


if __name__ == "__main__":
    main()
