/*-------------------------------------------------------------------------
 *
 * fuzz_retry_after.c
 *		  libFuzzer harness for cfdw_retry_after_ms.
 *
 * The input is a Retry-After value.  Oracles: the answer is -1 or a whole
 * number of seconds from 0 to one day in milliseconds; delay-seconds
 * ([+-]digits with blanks around) give exactly min(n, 86400) s, or 0 when
 * negative; a date in the past gives 0 and a later "now" never gives a
 * longer wait.
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_retry_after.c
 *
 *-------------------------------------------------------------------------
 */
#include "fuzz_common.h"

#define CAP_MS 86400000L

/* Independent reading of delay-seconds: true and *ms when value is one. */
static bool
delay_seconds(const char *s, long *ms)
{
	bool		negative = false;
	unsigned long long secs = 0;
	bool		digits = false;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '+' || *s == '-')
		negative = (*s++ == '-');
	while (*s >= '0' && *s <= '9')
	{
		digits = true;
		if (secs < 1000000)
			secs = secs * 10 + (unsigned long long) (*s - '0');
		s++;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	if (!digits || *s != '\0')
		return false;
	*ms = negative ? 0 : (secs > 86400 ? CAP_MS : (long) secs * 1000);
	return true;
}

static void
check_range(long ms)
{
	FUZZ_ASSERT(ms == -1 || (ms >= 0 && ms <= CAP_MS), "answer %ld out of range", ms);
	FUZZ_ASSERT(ms == -1 || ms % 1000 == 0, "answer %ld is not whole seconds", ms);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *value = fuzz_strndup(data, size);
	const time_t nows[] = {0, 784111777, 1700000000, 4102444800};
	long		ms[4];
	long		expected;
	size_t		i;

	for (i = 0; i < 4; i++)
	{
		ms[i] = cfdw_retry_after_ms(value, nows[i]);
		check_range(ms[i]);
	}
	if (delay_seconds(value, &expected))
	{
		for (i = 0; i < 4; i++)
			FUZZ_ASSERT(ms[i] == expected, "delay-seconds \"%s\": %ld, expected %ld",
						value, ms[i], expected);
	}
	else
	{
		/* a date: the same for every now, or shrinking as now grows */
		for (i = 1; i < 4; i++)
		{
			FUZZ_ASSERT((ms[i] == -1) == (ms[0] == -1), "readability depends on now");
			FUZZ_ASSERT(ms[i] <= ms[i - 1], "a later now gives a longer wait");
		}
		if (ms[0] != -1)
		{
			time_t		when = curl_getdate(value + strspn(value, " \t"), NULL);

			FUZZ_ASSERT(when != -1, "an unreadable date was read");
		}
	}
	free(value);
	return 0;
}
