/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

#include "od-protocol.h"

G_BEGIN_DECLS

typedef enum
{
  OD_ROLE_VIEWER,
  OD_ROLE_OPERATOR,
} OdRole;

typedef struct
{
  char   *name;
  OdRole  role;
  guint8  sha256[32];
} OdToken;

typedef struct _OdAuth OdAuth;

OdAuth        *od_auth_new_from_data  (const char     *json,
                                       gsize           len,
                                       GError        **error);
OdAuth        *od_auth_load           (const char     *path,
                                       GError        **error);
void           od_auth_free           (OdAuth         *auth);
guint          od_auth_get_n_tokens   (OdAuth         *auth);
const OdToken *od_auth_check          (OdAuth         *auth,
                                       const char     *authorization);
char          *od_auth_hash_token     (const char     *token);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdAuth, od_auth_free)

G_END_DECLS
