/*-------------------------------------------------------------------------
 *
 * fuzz_storage_check.c
 *		  libFuzzer harness for cfdw_storage_check and cfdw_storage_equal
 *		  (src/storage.c).
 *
 * The input is a storage body.  Oracles: cfdw_storage_check gives the same
 * answer with and without a fault to fill; on a refusal the fault's line
 * and column are 1-based and lie in the body (at most one past the end of
 * its line) and its message is a non-empty NUL-terminated string.
 * cfdw_storage_equal(body, body) is never 0, and -1 only when the check
 * refused the body; once a line feed is appended (different bytes, so the
 * trees are compared), a body the check accepts is equal to it both ways,
 * and one it refuses gives -1 both ways (the comparison's parser agrees
 * with the check).  Against a fixed well-formed body the answer is -1 exactly when
 * the check refused, and the same both ways.  ASan and LSan watch memory.
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_storage_check.c
 *
 *-------------------------------------------------------------------------
 */
#include <libxml/parser.h>

#include "fuzz_common.h"
#include "storage.h"

static const char fixed[] =
	"<p>Hello <strong>world</strong> &amp; &nbsp;all</p>"
	"<ac:structured-macro ac:name=\"info\"><ac:rich-text-body><p>x</p>"
	"</ac:rich-text-body></ac:structured-macro>";

/* cmark's default allocator: malloc, abort() when it fails */
static cmark_mem *
malloc_mem(void)
{
	return cmark_get_default_mem_allocator();
}

/* The fault lies in the body: a line it has, at most one past its end. */
static void
check_fault(const char *body, size_t len, const CfdwXmlFault *fault)
{
	int			line = 1;
	size_t		start = 0;
	size_t		end;

	FUZZ_ASSERT(fault->line >= 1, "fault line %d", fault->line);
	FUZZ_ASSERT(fault->column >= 1, "fault column %d", fault->column);
	fuzz_check_err(fault->message, sizeof(fault->message));
	for (size_t i = 0; i < len && line < fault->line; i++)
		if (body[i] == '\n')
			line++, start = i + 1;
	FUZZ_ASSERT(line == fault->line, "fault on line %d of a body of %d lines (%s)",
				fault->line, line, fault->message);
	end = start;
	while (end < len && body[end] != '\n')
		end++;
	FUZZ_ASSERT((size_t) fault->column <= end - start + 1,
				"fault at column %d of line %d, which has %zu bytes (%s)",
				fault->column, fault->line, end - start, fault->message);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	xmlInitParser();
	if (!cfdw_storage_check(fixed, sizeof(fixed) - 1, NULL, malloc_mem()))
		FUZZ_FAIL("the fixed body is not well formed");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so ASan sees any read past the body */
	char	   *body = malloc(size ? size : 1);
	char	   *more = malloc(size + 1);
	CfdwXmlFault fault;
	bool		ok;
	int			eq;
	int			eq2;

	if (body == NULL || more == NULL)
		abort();
	memcpy(body, data, size);
	memcpy(more, data, size);
	more[size] = '\n';

	memset(&fault, 0x7f, sizeof(fault));
	ok = cfdw_storage_check(body, size, &fault, malloc_mem());
	if (!ok)
		check_fault(body, size, &fault);
	FUZZ_ASSERT(cfdw_storage_check(body, size, NULL, malloc_mem()) == ok,
				"storage_check answers %d with a fault to fill, %d without", ok, !ok);

	eq = cfdw_storage_equal(body, size, body, size, malloc_mem());
	FUZZ_ASSERT(eq != 0, "storage_equal(body, body) = 0");
	FUZZ_ASSERT(eq == 1 || (eq == -1 && !ok),
				"storage_equal(body, body) = %d though the check answered %d", eq, ok);

	eq = cfdw_storage_equal(body, size, more, size + 1, malloc_mem());
	eq2 = cfdw_storage_equal(more, size + 1, body, size, malloc_mem());
	if (ok)
	{
		FUZZ_ASSERT(eq == 1, "storage_equal(body, body + \"\\n\") = %d for a well-formed body", eq);
		FUZZ_ASSERT(eq2 == 1, "storage_equal(body + \"\\n\", body) = %d for a well-formed body", eq2);
	}
	else
	{
		FUZZ_ASSERT(eq == -1 && eq2 == -1, "storage_equal(body, body + \"\\n\") = %d and "
					"storage_equal(body + \"\\n\", body) = %d though the check refused the body (%s)",
					eq, eq2, fault.message);
	}

	eq = cfdw_storage_equal(body, size, fixed, sizeof(fixed) - 1, malloc_mem());
	eq2 = cfdw_storage_equal(fixed, sizeof(fixed) - 1, body, size, malloc_mem());
	FUZZ_ASSERT((eq == -1) == !ok, "storage_equal(body, fixed) = %d though the check answered %d", eq, ok);
	FUZZ_ASSERT(eq == eq2, "storage_equal(body, fixed) = %d but storage_equal(fixed, body) = %d", eq, eq2);

	free(body);
	free(more);
	return 0;
}
