/*
 * asan_initfirst.c: a tiny library that test/sanitize.sh preloads after
 * libasan, so that AddressSanitizer's runtime is initialised before any
 * other library's constructor runs.
 *
 * Why: the ASan runtime preloaded into a program that was not linked with
 * it initialises lazily, on the first call it intercepts, unless its own
 * constructor comes first; ld.so runs the constructors of the deepest
 * dependencies first and a preloaded library's last.  PostgreSQL 15 on
 * Debian 12 pulls in libgpg-error (libsystemd -> libgcrypt), whose
 * constructor calls bindtextdomain().  glibc's bindtextdomain() takes the
 * write lock _nl_state_lock and calls malloc(); that first malloc()
 * initialises ASan, which calls dlsym() for an optional symbol and then
 * dlerror(), and dlerror() translates its message with dcgettext(), which
 * takes the same lock for reading: the read lock fails (EDEADLK, the thread
 * holds the write lock), dcgettext() releases it regardless, and
 * bindtextdomain()'s own release then leaves the lock's reader count at -1.
 * The next bindtextdomain(), PostgreSQL's in set_pglocale_pgservice(),
 * waits forever for readers that do not exist: `postgres -V` hangs.
 *
 * Linked with -z initfirst, this library's constructor runs before every
 * other one (glibc's DF_1_INITFIRST), and initialises ASan there, outside
 * any lock: what a program linked with -fsanitize=address gets from the
 * runtime's .preinit_array entry.  It needs libasan first in LD_PRELOAD
 * (the runtime checks that it comes first in the library list).
 *
 * It also hands UBSan its options.  UBSan's runtime (libubsan, loaded with
 * the instrumented extension) reads UBSAN_OPTIONS on its first report, from
 * /proc/self/environ, which the postmaster has overwritten with its process
 * title by then (PostgreSQL's ps_status.c), so it would run with its
 * defaults (no stack trace).  The runtime also asks the program for default
 * options through __ubsan_default_options(); this library, preloaded, is
 * found before libubsan's own weak definition and answers with the
 * UBSAN_OPTIONS it copied at start (up to 1023 bytes of it).
 */
#include <string.h>

extern void __asan_init(void);
const char *__ubsan_default_options(void);

static char ubsan_options[1024];

const char *
__ubsan_default_options(void)
{
	return ubsan_options;
}

/*
 * glibc passes argc, argv and envp to each constructor; environ itself is
 * set only by libc's own initialisation, which runs after this one.
 */
__attribute__((constructor)) static void
cfdw_asan_initfirst(int argc, char **argv, char **envp)
{
	static const char name[] = "UBSAN_OPTIONS=";

	__asan_init();
	for (; envp != NULL && *envp != NULL; envp++)
	{
		if (strncmp(*envp, name, sizeof(name) - 1) == 0 &&
			strlen(*envp + sizeof(name) - 1) < sizeof(ubsan_options))
			strcpy(ubsan_options, *envp + sizeof(name) - 1);
	}
}
