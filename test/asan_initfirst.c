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
 */
extern void __asan_init(void);

__attribute__((constructor)) static void
cfdw_asan_initfirst(void)
{
	__asan_init();
}
