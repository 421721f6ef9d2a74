// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The one place a native error is recorded: every failing function returns a
 * negative errno and leaves here what failed and what to do, which
 * flowcollect/kernel/bindings.py turns into an exception.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fc_internal.h"

#define FC_LIBBPF_LOG_LEN 2048
#define FC_PRIVILEGE_HINT "needs CAP_BPF and CAP_NET_ADMIN: run as root"

static __thread char fc_error[FC_ERROR_LEN];
/* Tail of what libbpf printed (the verifier log on a failed load). */
static __thread char fc_libbpf_tail[FC_LIBBPF_LOG_LEN];

const char *fc_last_error(void)
{
	return fc_error;
}

int fc_fail(int err, const char *fmt, ...)
{
	char what[FC_ERROR_LEN / 2];
	const char *hint = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err == -EPERM || err == -EACCES)
		hint = ": " FC_PRIVILEGE_HINT;
	snprintf(fc_error, sizeof(fc_error), "%s: %s%s", what, strerror(-err), hint);
	return err;
}

void fc_set_error(const char *message)
{
	snprintf(fc_error, sizeof(fc_error), "%s", message);
}

static int fc_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t used = strlen(fc_libbpf_tail);
	char line[512];
	int len;

	if (level == LIBBPF_DEBUG)
		return 0;
	len = vsnprintf(line, sizeof(line), fmt, ap);
	if (len <= 0)
		return 0;
	if ((size_t)len >= sizeof(line))
		len = sizeof(line) - 1;
	if (used + len >= sizeof(fc_libbpf_tail)) {
		/* Keep the tail: the last lines of a verifier log say what broke. */
		size_t keep = sizeof(fc_libbpf_tail) / 2;
		memmove(fc_libbpf_tail, fc_libbpf_tail + used - keep, keep);
		fc_libbpf_tail[keep] = '\0';
		used = keep;
	}
	memcpy(fc_libbpf_tail + used, line, len + 1);
	return 0;
}

void fc_capture_libbpf_log(void)
{
	fc_libbpf_tail[0] = '\0';
	libbpf_set_print(fc_libbpf_print);
}

const char *fc_libbpf_log(void)
{
	return fc_libbpf_tail;
}
