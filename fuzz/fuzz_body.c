/*-------------------------------------------------------------------------
 *
 * fuzz_body.c
 *		  libFuzzer harness for cfdw_json_to_xml (single and batch),
 *		  cfdw_json_to_form and cfdw_json_put.
 *
 * The input is "dotted.path\n" followed by JSON (without a newline in the
 * first 256 bytes, the path is "a.b" and the whole input is JSON).  The
 * JSON is read with cJSON_ParseWithLength; strings that start with '!'
 * become raw items (cJSON_CreateRaw) holding the rest, as the extension
 * makes for numbers kept as text and embedded json columns.
 *
 * Oracles: a refusal has a message; when the input is valid UTF-8, every
 * XML body is well-formed (libxml2 reads it back) with the right root
 * element; a form body holds only unreserved characters, %XX escapes, '&'
 * and exactly one '=' per pair; cfdw_json_put succeeds exactly when every
 * segment of the path is non-empty, and then the item is found at the
 * path, while a refused path leaves the tree as it was.  ASan and LSan
 * watch memory and ownership (the item is always taken).
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_body.c
 *
 *-------------------------------------------------------------------------
 */
#include <libxml/parser.h>

#include "fuzz_common.h"

static bool input_is_utf8;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	xmlInitParser();
	return 0;
}

/* Strings starting with '!' become raw items, in place. */
static void
rawify(cJSON *item, int depth)
{
	cJSON	   *child;

	if (depth > 200)
		return;
	if (cJSON_IsString(item) && item->valuestring && item->valuestring[0] == '!')
	{
		memmove(item->valuestring, item->valuestring + 1, strlen(item->valuestring));
		item->type = cJSON_Raw;
		return;
	}
	cJSON_ArrayForEach(child, item)
		rawify(child, depth + 1);
}

static void
check_xml(const cJSON *root, bool batch)
{
	char		err[CFDW_ERRLEN];
	char	   *xml;

	memset(err, 0x7f, sizeof(err));
	xml = cfdw_json_to_xml(root, batch, err, sizeof(err));
	if (xml == NULL)
	{
		fuzz_check_err(err, sizeof(err));
		return;
	}
	if (input_is_utf8)
	{
		xmlDocPtr	doc = xmlReadMemory(xml, (int) strlen(xml), "body.xml", NULL,
										XML_PARSE_NONET | XML_PARSE_NOERROR |
										XML_PARSE_NOWARNING | XML_PARSE_HUGE);
		xmlNodePtr	top;

		FUZZ_ASSERT(doc != NULL, "XML body is not well-formed:\n%s", xml);
		top = xmlDocGetRootElement(doc);
		FUZZ_ASSERT(top != NULL && strcmp((const char *) top->name, batch ? "requests" : "request") == 0,
					"XML body has the wrong root element");
		xmlFreeDoc(doc);
	}
	free(xml);
}

static int
hexdigit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static void
check_form(const cJSON *root)
{
	char		err[CFDW_ERRLEN];
	char	   *form;
	const char *p;
	int			equals = 0;

	memset(err, 0x7f, sizeof(err));
	form = cfdw_json_to_form(root, err, sizeof(err));
	if (form == NULL)
	{
		fuzz_check_err(err, sizeof(err));
		return;
	}
	FUZZ_ASSERT(cJSON_IsObject(root), "a form body was built from a non-object");
	for (p = form;; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '&' || c == '\0')
		{
			FUZZ_ASSERT(p == form ? c == '\0' : equals == 1,
						"form pair with %d '=' in \"%s\"", equals, form);
			equals = 0;
			if (c == '\0')
				break;
		}
		else if (c == '=')
			equals++;
		else if (c == '%')
		{
			FUZZ_ASSERT(hexdigit(p[1]) && hexdigit(p[2]), "bad %%XX in form \"%s\"", form);
			p += 2;
		}
		else
			FUZZ_ASSERT((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
						c == '-' || c == '.' || c == '_' || c == '~',
						"unescaped byte 0x%02x in form", c);
	}
	free(form);
}

static bool
path_valid(const char *path)
{
	const char *p;
	bool		empty = true;

	if (path[0] == '\0')
		return false;
	for (p = path; *p; p++)
	{
		if (*p == '.')
		{
			if (empty)
				return false;
			empty = true;
		}
		else
			empty = false;
	}
	return !empty;
}

/* The item at a dotted path, or NULL. */
static cJSON *
lookup(cJSON *root, const char *path)
{
	char	   *copy = strdup(path);
	char	   *seg = copy;
	cJSON	   *node = root;

	if (copy == NULL)
		abort();
	for (;;)
	{
		char	   *dot = strchr(seg, '.');

		if (dot)
			*dot = '\0';
		node = cJSON_GetObjectItemCaseSensitive(node, seg);
		if (node == NULL || dot == NULL)
			break;
		seg = dot + 1;
	}
	free(copy);
	return node;
}

static void
check_put(cJSON *root, const char *path)
{
	/* printed, not cJSON_Compare: that finds -inf unequal to itself */
	char	   *before = cJSON_PrintUnformatted(root);
	cJSON	   *item;
	bool		ok;

	if (before == NULL)
		abort();
	/* the item: a copy of the first member (so it may carry a key), or a string */
	item = root->child ? cJSON_Duplicate(root->child, true) : cJSON_CreateString("fuzz");
	if (item == NULL)
		abort();

	ok = cfdw_json_put(root, path, item);
	FUZZ_ASSERT(ok == path_valid(path), "json_put(\"%s\") answered %d", path, ok);
	if (ok)
		FUZZ_ASSERT(lookup(root, path) == item, "json_put(\"%s\"): the item is not at the path", path);
	else
	{
		char	   *after = cJSON_PrintUnformatted(root);

		FUZZ_ASSERT(after != NULL && strcmp(before, after) == 0,
					"refused json_put(\"%s\") changed the tree", path);
		cJSON_free(after);
	}
	cJSON_free(before);

	/* the changed tree serialises as well */
	check_xml(root, false);
	check_form(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
	char	   *path = nl ? fuzz_strndup(data, (size_t) (nl - data)) : strdup("a.b");
	const char *json = nl ? (const char *) nl + 1 : (const char *) data;
	size_t		jsonlen = nl ? size - (size_t) (nl - data) - 1 : size;
	cJSON	   *root;

	if (path == NULL)
		abort();
	/* the path becomes keys too: both must be UTF-8 for the XML oracle */
	input_is_utf8 = fuzz_valid_utf8(data, size);
	root = cJSON_ParseWithLength(json, jsonlen);
	if (root == NULL)
	{
		free(path);
		return 0;
	}
	rawify(root, 0);

	check_xml(root, false);
	check_xml(root, true);
	check_form(root);
	{
		/* a batch of two copies of whatever was read */
		cJSON	   *batch = cJSON_CreateArray();

		if (batch == NULL)
			abort();
		cJSON_AddItemToArray(batch, cJSON_Duplicate(root, true));
		cJSON_AddItemToArray(batch, cJSON_Duplicate(root, true));
		check_xml(batch, true);
		cJSON_Delete(batch);
	}
	if (cJSON_IsObject(root))
		check_put(root, path);

	cJSON_Delete(root);
	free(path);
	return 0;
}
