/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdkit servers for the NBD tests, the soak and the regression programs:
 * each one a child process serving on a Unix socket in a private directory
 * under /dev/shm (named like tl_tmpdir_make()'s, so that one left by a
 * killed process is removed by the next run), started with
 * --exit-with-parent so that a crashed process never leaves a server
 * behind.
 *
 * Servers started with nbdkit_start() are remembered: nbdkit_stop_all(),
 * called from the tests' cmocka teardown, stops every one of them whether
 * the test passed or not.
 */
#ifndef DMIO_TESTS_LIB_NBDKIT_H
#define DMIO_TESTS_LIB_NBDKIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define NBDKIT_MAX_SERVERS 8

struct nbdkit {
	atomic_int pid; /* 0 once reaped; read by signal handlers */
	bool stopped;	/* SIGSTOPped by nbdkit_sigstop() */
	char dir[160];	/* the private directory */
	char sock[192]; /* the server's Unix socket */
	char pidfile[192];
	char uri[512];	 /* nbd+unix:///?socket=SOCK */
	char ctl[192];	 /* a spare path in dir (pause-control=, ...) */
	char psk[192];	 /* the PSK file of nbdkit_start_tls() */
	char error[256]; /* why nbdkit_start() failed */
	char log[256];	 /* stdout and stderr appended here ("": none) */
	char **argv;	 /* the command line, for nbdkit_restart() */
};

/*
 * Can the tests run nbdkit at all?  true, or false with the reason in
 * @why (nbdkit not on PATH, or it does not run).  Checked once.
 */
bool nbdkit_available(char *why, size_t size);

/* Does this nbdkit have @filter (e.g. "error", "delay", "pause")? */
bool nbdkit_have_filter(const char *filter);

/* Does this nbdkit speak TLS (nbdkit --dump-config: tls=yes)? */
bool nbdkit_have_tls(void);

/*
 * Start `nbdkit --foreground --exit-with-parent --unix SOCK -P PIDFILE
 * ARGS...`, where @args (NULL-terminated) is the rest of the command line,
 * e.g. {"--filter=delay", "memory", "size=64M", "delay-write=20ms", NULL}.
 * In @args, "@CTL@" is replaced by the server's spare path
 * (s->ctl), "@PSK@" by its PSK file (s->psk).  Returns once the socket
 * accepts connections: the server, or NULL with the reason in @why.
 */
struct nbdkit *nbdkit_start(const char *const *args, char *why, size_t size);

/*
 * The same with --tls=require --tls-psk=FILE, FILE a fresh PSK file for
 * user @user ("USER:" and 64 hex digits); s->uri is then the TLS form
 * nbds+unix://USER@/?socket=SOCK&tls-psk-file=FILE.
 */
struct nbdkit *nbdkit_start_tls(const char *user, const char *const *args,
				char *why, size_t size);

/*
 * nbdkit_start() with the server's directory under @parent (not /dev/shm)
 * and its standard output and error appended to the file @log
 * (nbdkit_start() leaves stderr to the caller's and drops stdout).
 */
struct nbdkit *nbdkit_start_logged(const char *parent, const char *log,
				   const char *const *args, char *why,
				   size_t size);

/*
 * Start a server that was killed (nbdkit_sigkill()) again with the same
 * command line, on the same socket; returns once it listens.  0, or -1
 * with the reason in @why.
 */
int nbdkit_restart(struct nbdkit *s, char *why, size_t size);

/* Signals to the server: SIGKILL (and reap it), SIGSTOP, SIGCONT. */
int nbdkit_sigkill(struct nbdkit *s);
int nbdkit_sigstop(struct nbdkit *s);
int nbdkit_sigcont(struct nbdkit *s);

/*
 * Stop the server: SIGCONT if stopped, resume it if a pause filter's
 * control socket is at s->ctl, SIGTERM, wait up to 5 s (nbdkit waits for
 * its clients to hang up), then SIGKILL; reap it, remove its
 * directory and forget it.  Returns 0, or -1
 * when it had to be killed.  NULL is ignored.
 */
int nbdkit_stop(struct nbdkit *s);

/* SIGCONT every server stopped by nbdkit_sigstop(). */
void nbdkit_sigcont_all(void);

/*
 * Stop every server still running (cmocka teardown).  Returns 0 or -1.
 * nbdkit waits for its connections to end before it exits on SIGTERM:
 * close the devices first.
 */
int nbdkit_stop_all(void);

/* Send the pause filter's control command @cmd ('p' or 'r') to the socket
 * s->ctl and wait (at most 5 s) for its answer; 0 or -errno. */
int nbdkit_pause_control(struct nbdkit *s, char cmd);

/*
 * SIGKILL every server and remove their directories, with nothing but
 * async-signal-safe calls: for a process that is going down (a signal
 * handler, a failed check).  The servers are not reaped nor forgotten.
 */
void nbdkit_kill_all(void);

#endif /* DMIO_TESTS_LIB_NBDKIT_H */
