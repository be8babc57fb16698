/*
 * test_notify.c - the service notifications never block the caller: a
 * reader that stops reading (a stalled service manager) costs a dropped
 * STATUS=, not a stuck main thread; READY=1 is retried, then dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A bound datagram socket at a fresh path, exported as NOTIFY_SOCKET. */
static int listener(char *path, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(path, len, "/tmp/usv-notify-%d-%ld.sock", (int)getpid(), (long)random());
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	return fd;
}

static void test_messages_arrive(void **state)
{
	(void)state;
	char path[108], buf[1024];
	int fd = listener(path, sizeof path);
	assert_int_equal(usv_notify_ready("up"), 0);
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
	assert_true(n > 0);
	buf[n] = 0;
	assert_string_equal(buf, "READY=1\nSTATUS=up");
	assert_int_equal(usv_notify_status("queued=%d", 7), 0);
	n = recv(fd, buf, sizeof buf - 1, 0);
	assert_true(n > 0);
	buf[n] = 0;
	assert_string_equal(buf, "STATUS=queued=7");
	assert_int_equal(usv_notify_watchdog(), 0);
	n = recv(fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	assert_string_equal(buf, "WATCHDOG=1");
	close(fd);
	unlink(path);
	unsetenv("NOTIFY_SOCKET");
}

static void test_stalled_reader(void **state)
{
	(void)state;
	char path[108];
	int fd = listener(path, sizeof path);
	/* nobody reads: the queue fills after max_dgram_qlen messages */
	double t0 = mono();
	int dropped = 0;
	for (int i = 0; i < 200; i++)
		if (usv_notify_status("tick %d", i) == -EAGAIN)
			dropped++;
	double t1 = mono();
	assert_true(dropped > 0);
	assert_true(t1 - t0 < 1.0); /* 200 sends, none of them waited */
	/* the important ones are retried for a while, then given up */
	assert_int_equal(usv_notify_stopping("bye"), -EAGAIN);
	double t2 = mono();
	assert_true(t2 - t1 >= 1.5 && t2 - t1 < 10.0);
	/* once the reader catches up, messages go through again */
	char buf[1024];
	while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
	}
	assert_int_equal(usv_notify_stopping("bye"), 0);
	close(fd);
	unlink(path);
	unsetenv("NOTIFY_SOCKET");
}

static void test_unset(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(usv_notify_ready("up"), 0);
	assert_int_equal(usv_notify_status("x"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_messages_arrive),
	    cmocka_unit_test(test_stalled_reader),
	    cmocka_unit_test(test_unset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
