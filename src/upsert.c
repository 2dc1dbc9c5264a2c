/*-------------------------------------------------------------------------
 *
 * upsert.c
 *		  on_conflict 'update' and 'skip' (README "Upsert by title"): a row
 *		  of a pages or blogposts table whose title is taken in its space
 *		  updates that page, or leaves it alone, instead of failing with
 *		  Confluence's 400.  Also the one lookup by title, which the queue
 *		  worker uses to find a page an interrupted create may have made.
 *
 * Each row is a small state machine.  It looks for the page first (GET of
 * the list by space and title), so that a nightly republish of an
 * unchanged report costs one GET and makes no version; a page not found is
 * created with the row's POST; one found is updated with a PUT at version
 * + 1 unless its title, body, status (and parent, when the row gives one)
 * already say what the row says.  Losing a race changes the step, not the
 * outcome: a POST refused for a duplicate title, or a PUT refused for a
 * stale version, goes back to the lookup (at most MAX_LOOKUPS times).
 *
 * The rows of one call advance together, a step of every row per round of
 * cfdw_send_all, so a pipelined INSERT and the worker keep up to
 * max_concurrency requests in flight; rows with the same space and title
 * wait for each other, so the second one finds the page the first made.
 *
 * IDENTIFICATION
 *		  src/upsert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "confluence_fdw.h"

/* Lookups one row may make: the first, and one per lost race. */
#define MAX_LOOKUPS 3

typedef enum UpsertStep
{
	STEP_LOOKUP,				/* GET the list by space and title */
	STEP_CREATE,				/* POST the row */
	STEP_UPDATE,				/* PUT the row over the page found */
	STEP_DONE
} UpsertStep;

typedef struct UpsertRow
{
	MemoryContext cxt;			/* everything of the row; gone once reported */
	const CfdwRequest *post;	/* the row's own request */
	cJSON	   *row;			/* its body, parsed */
	const char *space;			/* and what the lookup and the */
	const char *title;			/* comparison need of it */
	UpsertStep	step;
	int			lookups;
	CfdwRequest req;			/* the request of the current step */
	CfdwResponse resp;			/* its answer; body copied into our memory */
} UpsertRow;

typedef struct Upsert
{
	const CfdwTable *t;
	UpsertRow  *rows;
	int			n;
	int		   *active;			/* row of each request of the round */
	MemoryContext cxt;
	CfdwUpsertDone done;
	void	   *arg;
} Upsert;

static const char *
json_string(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(item) ? item->valuestring : NULL;
}

/*
 * cfdw_title_lookup
 *		The request that finds a page (or blog post) by its space and title:
 *		GET of the list, in the given status, with its storage body when
 *		with_body.  Titles are unique per space among current pages (drafts
 *		may share one), which is what makes a title an upsert's key and the
 *		worker's proof that an interrupted create arrived.  The one lookup
 *		of both; its answer is read by cfdw_title_lookup_find.
 */
void
cfdw_title_lookup(const CfdwTable *t, const char *space, const char *title,
				  const char *status, bool with_body, CfdwRequest *req)
{
	memset(req, 0, sizeof(CfdwRequest));
	req->method = CFDW_GET;
	req->path_for_messages = psprintf("%s?space-id=%s&title=%s&status=%s%s&limit=25",
									  t->template->list_path, cfdw_url_encode_utf8(space),
									  cfdw_url_encode_utf8(title), cfdw_url_encode_utf8(status),
									  with_body ? "&body-format=storage" : "");
	req->url = psprintf("%s%s", t->base, req->path_for_messages);
}

/*
 * cfdw_title_lookup_find
 *		The item of a lookup's answer with exactly this space and title (the
 *		list's title filter is not documented as exact, and may match a
 *		draft's), parsed in the current context; NULL when there is none.
 */
void *
cfdw_title_lookup_find(const CfdwResponse *resp, const char *space, const char *title)
{
	cJSON	   *answer = cfdw_json_parse_owned(resp->body, resp->body_len);
	cJSON	   *results = cJSON_GetObjectItemCaseSensitive(answer, "results");
	cJSON	   *item;

	cJSON_ArrayForEach(item, results)
	{
		const char *t = json_string(item, "title");
		const char *s = json_string(item, "spaceId");

		if (t && strcmp(t, title) == 0 && (s == NULL || strcmp(s, space) == 0))
			return item;
	}
	return NULL;
}

/*
 * cfdw_is_duplicate_title
 *		Whether an answer is Confluence's refusal of a create whose title is
 *		taken in the space ("A page with this title already exists").  Its
 *		message is the only sign: the status is a plain 400.
 */
bool
cfdw_is_duplicate_title(const CfdwResponse *resp)
{
	return resp->outcome == CFDW_ANSWERED && resp->status == 400 && resp->body != NULL &&
		strstr(resp->body, "already exists") != NULL;
}

/* The row's lookup: current ones only, the body when it is compared. */
static void
set_lookup(Upsert *u, UpsertRow *r)
{
	r->step = STEP_LOOKUP;
	r->lookups++;
	cfdw_title_lookup(u->t, r->space, r->title, "current",
					  u->t->on_conflict == CFDW_CONFLICT_UPDATE, &r->req);
}

/* Whether the page found already says what the row would write. */
static bool
unchanged(const UpsertRow *r, const cJSON *item)
{
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(r->row, "body");
	const char *status = json_string(r->row, "status");
	const char *parent = json_string(r->row, "parentId");
	const char *repr = json_string(body, "representation");
	const char *wanted = json_string(body, "value");
	const cJSON *stored = cJSON_GetObjectItemCaseSensitive(item, "body");
	const char *current = json_string(cJSON_GetObjectItemCaseSensitive(stored, "storage"), "value");
	const char *item_status = json_string(item, "status");
	const char *item_parent = json_string(item, "parentId");

	if (strcmp(status ? status : "current", item_status ? item_status : "") != 0)
		return false;
	if (parent && (item_parent == NULL || strcmp(parent, item_parent) != 0))
		return false;
	/* a row without a body keeps the page's (set_update), as with parent */
	if (wanted == NULL)
		return true;
	/* wiki and atlas_doc_format are converted by Confluence: no comparison */
	if (wanted && repr && strcmp(repr, "storage") != 0)
		return false;
	return cfdw_same_storage(current ? current : "", wanted);
}

/* End a row with the page found as its answer (skipped, unchanged). */
static void
finish_with_item(UpsertRow *r, cJSON *item, const char *action)
{
	char	   *text = cJSON_PrintUnformatted(item);

	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while reading Confluence's answer")));
	r->resp.body = pstrdup(text);
	free(text);
	r->resp.body_len = strlen(r->resp.body);
	r->resp.link[0] = '\0';
	r->resp.action = action;
	r->step = STEP_DONE;
}

static void
add_or_fail(bool ok)
{
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a Confluence request")));
}

/*
 * The PUT of a row over the page found: the row's title, status, body and
 * parent, the page's id and space, and its version + 1.  A row without a
 * body value (a NULL body column) keeps the page's body, as one without a
 * parent keeps its parent: a PUT must carry a body, so the one the lookup
 * read (body-format=storage) is sent back.
 */
static void
set_update(Upsert *u, UpsertRow *r, const cJSON *item)
{
	const CfdwTable *t = u->t;
	const char *id = json_string(item, "id");
	const cJSON *version = cJSON_GetObjectItemCaseSensitive(item, "version");
	const cJSON *number = cJSON_GetObjectItemCaseSensitive(version, "number");
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(r->row, "body");
	const char *status = json_string(r->row, "status");
	const char *parent = json_string(r->row, "parentId");
	const cJSON *stored = cJSON_GetObjectItemCaseSensitive(item, "body");
	const char *current = json_string(cJSON_GetObjectItemCaseSensitive(stored, "storage"), "value");
	cJSON	   *put = cfdw_json_parse_owned("{}", 2);
	cJSON	   *v;
	char	   *text;

	if (id == NULL || !cJSON_IsNumber(number))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Confluence listed the %s \"%s\" without an id and version number",
						t->template->name, r->title),
				 errhint("Nothing was sent for this row.")));
	if (json_string(body, "value") == NULL && current == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Confluence listed the %s \"%s\" without its storage body, which a row without a body keeps",
						t->template->name, r->title),
				 errhint("Nothing was sent for this row.")));
	add_or_fail(cJSON_AddStringToObject(put, "id", id) != NULL);
	add_or_fail(cJSON_AddStringToObject(put, "status", status ? status : "current") != NULL);
	add_or_fail(cJSON_AddStringToObject(put, "title", r->title) != NULL);
	add_or_fail(cJSON_AddStringToObject(put, "spaceId", r->space) != NULL);
	if (parent && strcmp(t->template->name, "pages") == 0)
		add_or_fail(cJSON_AddStringToObject(put, "parentId", parent) != NULL);
	if (json_string(body, "value") != NULL)
		add_or_fail(cJSON_AddItemToObject(put, "body", cJSON_Duplicate(body, true)));
	else
	{
		cJSON	   *kept = cJSON_AddObjectToObject(put, "body");

		add_or_fail(kept && cJSON_AddStringToObject(kept, "representation", "storage") &&
					cJSON_AddStringToObject(kept, "value", current));
	}
	v = cJSON_AddObjectToObject(put, "version");
	add_or_fail(v && cJSON_AddNumberToObject(v, "number", number->valuedouble + 1));

	text = cJSON_PrintUnformatted(put);
	add_or_fail(text != NULL);
	r->step = STEP_UPDATE;
	memset(&r->req, 0, sizeof(CfdwRequest));
	r->req.method = CFDW_PUT;
	r->req.body = pstrdup(text);
	free(text);
	r->req.body_len = strlen(r->req.body);
	r->req.content_type = t->content_type;
	r->req.path_for_messages = psprintf("%s/%s", t->template->list_path, cfdw_url_encode_utf8(id));
	r->req.url = psprintf("%s%s", t->base, r->req.path_for_messages);
}

/* Whether an answer says the step lost a race that a new lookup settles. */
static bool
lost_race(const UpsertRow *r)
{
	const CfdwResponse *resp = &r->resp;

	if (resp->outcome != CFDW_ANSWERED || r->lookups >= MAX_LOOKUPS || resp->body == NULL)
		return false;
	if (r->step == STEP_CREATE)
		return cfdw_is_duplicate_title(resp);
	return resp->status == 409 || (resp->status == 400 && strstr(resp->body, "version") != NULL);
}

/* What the row does next, given the answer to its current step. */
static void
advance(Upsert *u, UpsertRow *r)
{
	bool		ok = r->resp.outcome == CFDW_ANSWERED && r->resp.status < 300;
	cJSON	   *item;

	switch (r->step)
	{
		case STEP_LOOKUP:
			if (!ok)
				r->step = STEP_DONE;	/* the GET's failure is the row's */
			else if ((item = cfdw_title_lookup_find(&r->resp, r->space, r->title)) == NULL)
			{
				r->step = STEP_CREATE;
				r->req = *r->post;
			}
			else if (u->t->on_conflict == CFDW_CONFLICT_SKIP)
				finish_with_item(r, item, "skipped");
			else if (unchanged(r, item))
				finish_with_item(r, item, "unchanged");
			else
				set_update(u, r, item);
			break;
		case STEP_CREATE:
		case STEP_UPDATE:
			if (lost_race(r))
				set_lookup(u, r);
			else
			{
				if (ok)
					r->resp.action = r->step == STEP_CREATE ? "created" : "updated";
				r->step = STEP_DONE;
			}
			break;
		case STEP_DONE:
			break;
	}
}

/*
 * cfdw_send_all's callback: keep the answer, take the next step.  A row
 * that is done is reported, and its memory goes at once: the worker sends
 * hundreds of rows in one call.
 */
static void
step_done(void *arg, int index, const CfdwRequest *req, const CfdwResponse *resp)
{
	Upsert	   *u = (Upsert *) arg;
	UpsertRow  *r = &u->rows[u->active[index]];
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	/* the transport owns the body only until this returns */
	r->resp = *resp;
	if (resp->body)
	{
		char	   *copy = palloc(resp->body_len + 1);

		memcpy(copy, resp->body, resp->body_len);
		copy[resp->body_len] = '\0';
		r->resp.body = copy;
	}
	advance(u, r);
	MemoryContextSwitchTo(old);
	if (r->step == STEP_DONE)
	{
		u->done(u->arg, u->active[index], &r->req, &r->resp);
		MemoryContextDelete(r->cxt);
		r->cxt = NULL;
	}
}

/* Whether an earlier row still under way has the same space and title. */
static bool
waits_for_earlier(const Upsert *u, int i)
{
	if (u->rows[i].title[0] == '\0')
		return false;
	for (int j = 0; j < i; j++)
		if (u->rows[j].step != STEP_DONE && strcmp(u->rows[j].space, u->rows[i].space) == 0 &&
			strcmp(u->rows[j].title, u->rows[i].title) == 0)
			return true;
	return false;
}

/*
 * A row the upsert cannot look up (no space or title: a draft without a
 * title, say) is sent as it is, and Confluence's answer is its outcome.
 */
static void
start_row(Upsert *u, UpsertRow *r, const CfdwRequest *post)
{
	MemoryContext old;

	r->cxt = AllocSetContextCreate(u->cxt, "confluence_fdw upsert row", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(r->cxt);
	r->post = post;
	r->row = post->body ? cfdw_json_parse_owned(post->body, post->body_len) : NULL;
	r->space = json_string(r->row, "spaceId");
	r->title = json_string(r->row, "title");
	if (r->space && r->title)
		set_lookup(u, r);
	else
	{
		r->step = STEP_CREATE;
		r->lookups = MAX_LOOKUPS;
		r->req = *post;
		r->space = r->title = "";
	}
	MemoryContextSwitchTo(old);
}

/*
 * cfdw_upsert_all
 *		Send n rows of an on_conflict table, each row's POST in posts, and
 *		call done with each row's last request and final answer (its action
 *		set) as each finishes; they are valid only until done returns.
 *		Memory in the current context.  On an error
 *		the requests in flight are stopped (cfdw_send_all).
 */
void
cfdw_upsert_all(CfdwConnection *c, const CfdwTable *t, const CfdwRequest *posts, int n,
				CfdwUpsertDone done, void *arg)
{
	Upsert		u;
	CfdwRequest *reqs = palloc(sizeof(CfdwRequest) * n);

	u.t = t;
	u.n = n;
	u.rows = palloc0(sizeof(UpsertRow) * n);
	u.active = palloc(sizeof(int) * n);
	u.cxt = CurrentMemoryContext;
	u.done = done;
	u.arg = arg;
	for (int i = 0; i < n; i++)
		start_row(&u, &u.rows[i], &posts[i]);

	for (;;)
	{
		int			nreq = 0;

		for (int i = 0; i < n; i++)
		{
			if (u.rows[i].step == STEP_DONE || waits_for_earlier(&u, i))
				continue;
			u.active[nreq] = i;
			reqs[nreq++] = u.rows[i].req;
		}
		if (nreq == 0)
			break;
		cfdw_send_all(c, t, reqs, nreq, NULL, step_done, &u);
	}
}
