/* LD_PRELOAD aid for crashes that happen only on another machine: on SIGSEGV,
 * SIGBUS or SIGILL it writes "SEGV-BACKTRACE" and the native stack to
 * stderr, then dies of the same signal. Build and use:
 *   cc -shared -fPIC -O1 -o /tmp/segv.so tools/segv_backtrace.c
 *   LD_PRELOAD=/tmp/segv.so PYTHONFAULTHANDLER=1 python3 -m pytest ...
 * (tests that run a subprocess and report its stderr then show where it died). */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_fault(int sig) {
    static const char head[] = "SEGV-BACKTRACE\n";
    void *frames[64];
    const int n = backtrace(frames, 64);
    (void)!write(2, head, sizeof head - 1);
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

__attribute__((constructor)) static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGBUS, &sa, 0);
    sigaction(SIGILL, &sa, 0);
}
