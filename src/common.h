/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What every source file of the library shares: the public types and the
 * attributes the code is built with.  Nothing under src/ is installed.
 */
#ifndef DMIO_COMMON_H
#define DMIO_COMMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <dmio/dm-io.h>

#define DMIO_EXPORT __attribute__((visibility("default")))
/* Thread-locals of a shared library cost a __tls_get_addr call each time
 * unless they come from the static TLS block, which a few pointers may. */
#define DMI_TLS _Thread_local __attribute__((tls_model("initial-exec")))

#endif /* DMIO_COMMON_H */
