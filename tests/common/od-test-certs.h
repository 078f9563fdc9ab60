/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Makes throwaway certificates with openssl in a new temporary directory,
 * which it returns (remove it with od_test_certs_remove):
 *   ca.pem, other-ca.pem                  two private CAs (with .key)
 *   good.pem / .key                       by ca, for 127.0.0.1 and localhost
 *   expired.pem / .key                    by ca, valid only in January 2020
 *   wrong-host.pem / .key                 by ca, for orders.example.com
 *   unknown-ca.pem / .key                 by other-ca, for 127.0.0.1
 *   self-signed.pem / .key                its own issuer, for 127.0.0.1
 * Fails the test when openssl is missing or refuses. */
char *od_test_certs_make   (void);
void  od_test_certs_remove (const char *dir);

G_END_DECLS
