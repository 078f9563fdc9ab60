/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-auth.h"

#include <glib/gstdio.h>
#include <string.h>

struct _OdAuth
{
  GPtrArray *tokens; /* OdToken */
};

static void
token_free (OdToken *token)
{
  g_free (token->name);
  g_free (token);
}

void
od_auth_free (OdAuth *auth)
{
  if (auth == NULL)
    return;
  g_ptr_array_unref (auth->tokens);
  g_free (auth);
}

static gboolean
parse_hex (const char *hex,
           guint8      out[32])
{
  if (hex == NULL || strlen (hex) != 64)
    return FALSE;
  for (guint i = 0; i < 32; i++)
    {
      int hi = g_ascii_xdigit_value (hex[2 * i]);
      int lo = g_ascii_xdigit_value (hex[2 * i + 1]);

      if (hi < 0 || lo < 0)
        return FALSE;
      out[i] = (guint8) (hi << 4 | lo);
    }
  return TRUE;
}

OdAuth *
od_auth_new_from_data (const char  *json,
                       gsize        len,
                       GError     **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  g_autoptr(GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  OdAuth *auth;
  JsonNode *root;
  JsonArray *array;

  if (!json_parser_load_from_data (parser, json, len, error))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the tokens file must hold a JSON array");
      return NULL;
    }

  auth = g_new0 (OdAuth, 1);
  auth->tokens = g_ptr_array_new_with_free_func ((GDestroyNotify) token_free);
  array = json_node_get_array (root);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *node = json_array_get_element (array, i);
      JsonObject *object;
      const char *name, *role, *hash;
      OdToken *token;

      if (!od_json_is_object (node))
        goto bad_entry;
      object = json_node_get_object (node);
      name = od_json_is_string (json_object_get_member (object, "name"))
               ? json_object_get_string_member (object, "name") : NULL;
      role = od_json_is_string (json_object_get_member (object, "role"))
               ? json_object_get_string_member (object, "role") : NULL;
      hash = od_json_is_string (json_object_get_member (object, "token_sha256"))
               ? json_object_get_string_member (object, "token_sha256") : NULL;
      if (name == NULL || *name == '\0' || strlen (name) > 64 || role == NULL)
        goto bad_entry;
      if (g_hash_table_contains (names, name))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "token name '%s' appears twice", name);
          od_auth_free (auth);
          return NULL;
        }
      token = g_new0 (OdToken, 1);
      token->name = g_strdup (name);
      if (g_str_equal (role, "operator"))
        token->role = OD_ROLE_OPERATOR;
      else if (g_str_equal (role, "viewer"))
        token->role = OD_ROLE_VIEWER;
      else
        {
          token_free (token);
          goto bad_entry;
        }
      if (!parse_hex (hash, token->sha256))
        {
          token_free (token);
          goto bad_entry;
        }
      g_hash_table_add (names, token->name);
      g_ptr_array_add (auth->tokens, token);
      continue;

    bad_entry:
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "entry %u of the tokens file needs name (1..64 characters), role "
                   "(viewer or operator) and token_sha256 (64 hex digits)", i);
      od_auth_free (auth);
      return NULL;
    }
  return auth;
}

OdAuth *
od_auth_load (const char  *path,
              GError     **error)
{
  g_autofree char *contents = NULL;
  GStatBuf st;
  gsize len;

  if (!g_file_get_contents (path, &contents, &len, error))
    return NULL;
  /* Hashes of tokens can be attacked offline: the file is for the
   * server's user, and at most readable by its group (root:orderdesk
   * 0640 is how the systemd unit's README installs it). */
  if (g_stat (path, &st) == 0 && (st.st_mode & 037) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                   "others may read or change it (mode %04o); run: chmod 600 %s",
                   (guint) (st.st_mode & 07777), path);
      return NULL;
    }
  return od_auth_new_from_data (contents, len, error);
}

guint
od_auth_get_n_tokens (OdAuth *auth)
{
  return auth->tokens->len;
}

char *
od_auth_hash_token (const char *token)
{
  return g_compute_checksum_for_string (G_CHECKSUM_SHA256, token, -1);
}

/* Returns the token for an "Authorization: Bearer …" value, or NULL for a
 * missing, malformed or unknown one.  Every entry is compared, each in
 * constant time, so the answer time does not tell how close a guess was. */
const OdToken *
od_auth_check (OdAuth     *auth,
               const char *authorization)
{
  g_autoptr(GChecksum) sum = NULL;
  const OdToken *found = NULL;
  const char *token;
  guint8 digest[32];
  gsize digest_len = sizeof digest;
  gsize len;

  if (authorization == NULL || g_ascii_strncasecmp (authorization, "Bearer ", 7) != 0)
    return NULL;
  token = authorization + 7;
  len = strlen (token);
  if (len < 1 || len > 512)
    return NULL;
  for (gsize i = 0; i < len; i++)
    if (token[i] <= 0x20 || token[i] > 0x7e)
      return NULL;

  sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, (const guchar *) token, len);
  g_checksum_get_digest (sum, digest, &digest_len);

  for (guint i = 0; i < auth->tokens->len; i++)
    {
      const OdToken *candidate = g_ptr_array_index (auth->tokens, i);
      guint8 diff = 0;

      for (guint j = 0; j < 32; j++)
        diff |= candidate->sha256[j] ^ digest[j];
      if (diff == 0)
        found = candidate;
    }
  return found;
}
