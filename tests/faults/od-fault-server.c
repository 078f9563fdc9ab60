/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-fault-server.h"
#include "od-test-log.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

char *
od_fault_tmpdir (const char *name)
{
  g_autofree char *tmpl = g_strdup_printf ("od-fault-%s-XXXXXX", name);
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp (tmpl, &error);

  g_assert_no_error (error);
  return dir;
}

void
od_fault_rmdir (const char *dir)
{
  od_test_process_rmdir (dir);
}

static const OdTestToken fault_tokens[] = {
  { "olga", "operator", OD_FAULT_OPERATOR_TOKEN },
  { "vera", "viewer", OD_FAULT_VIEWER_TOKEN },
};

/* Starts the server on the port of the last run (any port the first
 * time): the clients and the proxy keep the URL across a restart. */
static void
spawn (OdFaultServer *s)
{
  g_autofree char *store = g_strconcat ("--store=sqlite:", s->store, NULL);
  const char *args[] = { store, "--rate-limit", "0", NULL };

  od_test_process_start (s->process, s->port, args);
  s->proc = od_test_process_subprocess (s->process);
  /* Client threads read s->url while the server restarts: it is set once
   * and never freed or replaced until the end (the port is kept, so the
   * URL is the same string). */
  if (s->url == NULL)
    s->url = g_strdup (od_test_process_url (s->process));
  else
    g_assert_cmpstr (s->url, ==, od_test_process_url (s->process));
  s->port = od_test_process_port (s->process);
}

OdFaultServer *
od_fault_server_start (void)
{
  OdFaultServer *s = g_new0 (OdFaultServer, 1);

  s->process = od_test_process_new ("od-fault-server", "under test", fault_tokens,
                                    G_N_ELEMENTS (fault_tokens));
  s->dir = od_test_process_dir (s->process);
  s->log = od_test_process_log_path (s->process);
  s->store = g_build_filename (s->dir, "store.sqlite", NULL);
  spawn (s);
  return s;
}

void
od_fault_server_kill (OdFaultServer *s)
{
  od_test_process_kill (s->process);
  s->proc = NULL;
}

void
od_fault_server_restart (OdFaultServer *s)
{
  g_assert_null (s->proc);
  spawn (s);
}

void
od_fault_server_free (OdFaultServer *s)
{
  od_test_process_terminate (s->process);
  s->proc = NULL;
  od_test_process_free (s->process, g_getenv ("OD_FAULT_KEEP") != NULL);
  g_free (s->store);
  g_free (s->url);
  g_free (s);
}

SoupSession *
od_fault_session_new (void)
{
  return soup_session_new_with_options ("timeout", 20, "max-conns", 8, "max-conns-per-host", 8,
                                        NULL);
}

guint
od_fault_post_command (SoupSession  *session,
                       const char   *url,
                       const char   *key,
                       const char   *body,
                       char        **answer,
                       gboolean     *replayed)
{
  g_autofree char *uri = g_strconcat (url, "/v1/commands", NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("POST", uri);
  g_autoptr(GBytes) req = g_bytes_new (body, strlen (body));
  g_autoptr(GBytes) resp = NULL;
  g_autoptr(GError) error = NULL;
  SoupMessageHeaders *h = soup_message_get_request_headers (msg);

  soup_message_headers_replace (h, "Authorization", "Bearer " OD_FAULT_OPERATOR_TOKEN);
  soup_message_headers_replace (h, "Idempotency-Key", key);
  soup_message_set_request_body_from_bytes (msg, "application/json", req);
  resp = soup_session_send_and_read (session, msg, NULL, &error);
  if (replayed)
    *replayed = FALSE;
  if (resp == NULL || soup_message_get_status (msg) < 100)
    {
      if (answer)
        *answer = g_strdup (error ? error->message : "no status");
      return 0;
    }
  if (replayed)
    *replayed = g_strcmp0 (soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                         "Idempotent-Replayed"), "true") == 0;
  if (answer)
    *answer = g_strndup (g_bytes_get_data (resp, NULL), g_bytes_get_size (resp));
  return soup_message_get_status (msg);
}

static GBytes *
get (SoupSession *session,
     const char  *url,
     const char  *path,
     guint       *status)
{
  g_autofree char *uri = g_strconcat (url, path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", uri);
  GBytes *body;

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_FAULT_VIEWER_TOKEN);
  body = soup_session_send_and_read (session, msg, NULL, NULL);
  *status = body ? soup_message_get_status (msg) : 0;
  return body;
}

gint64
od_fault_head (SoupSession *session,
               const char  *url)
{
  guint status;
  g_autoptr(GBytes) body = get (session, url, "/v1/head", &status);
  g_autoptr(JsonNode) root = NULL;

  if (body == NULL || status != 200)
    return -1;
  root = od_json_parse_object (g_bytes_get_data (body, NULL), g_bytes_get_size (body), NULL);
  g_assert_nonnull (root);
  return json_object_get_int_member (json_node_get_object (root), "head");
}

GPtrArray *
od_fault_fetch_events (SoupSession *session,
                       const char  *url)
{
  return od_test_read_log (session, url, OD_FAULT_VIEWER_TOKEN);
}

gboolean
od_fault_parse_answer (const char *answer,
                       gint64     *position,
                       gint64     *version)
{
  g_autoptr(JsonNode) root = od_json_parse_object (answer, -1, NULL);
  JsonObject *o;

  if (root == NULL)
    return FALSE;
  o = json_node_get_object (root);
  if (!od_json_is_integer (json_object_get_member (o, "position"))
      || !od_json_is_integer (json_object_get_member (o, "version")))
    return FALSE;
  *position = json_object_get_int_member (o, "position");
  *version = json_object_get_int_member (o, "version");
  return TRUE;
}

gint64
od_fault_scalar (sqlite3    *db,
                 const char *sql)
{
  sqlite3_stmt *st = NULL;
  gint64 v = -1;

  g_assert_cmpint (sqlite3_prepare_v2 (db, sql, -1, &st, NULL), ==, SQLITE_OK);
  if (sqlite3_step (st) == SQLITE_ROW)
    v = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return v;
}

gboolean
od_fault_integrity_ok (sqlite3 *db)
{
  sqlite3_stmt *st = NULL;
  gboolean ok;

  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &st, NULL), ==,
                   SQLITE_OK);
  ok = sqlite3_step (st) == SQLITE_ROW
       && g_strcmp0 ((const char *) sqlite3_column_text (st, 0), "ok") == 0;
  sqlite3_finalize (st);
  return ok;
}

double
od_fault_percentile (double *values,
                     guint   n,
                     double  pct)
{
  guint i;

  if (n == 0)
    return 0;
  for (guint a = 1; a < n; a++)
    for (guint b = a; b > 0 && values[b - 1] > values[b]; b--)
      {
        double t = values[b];

        values[b] = values[b - 1];
        values[b - 1] = t;
      }
  i = (guint) (pct / 100.0 * (n - 1) + 0.5);
  return values[MIN (i, n - 1)];
}

static gboolean
text_equal (sqlite3_stmt *st,
            int           col,
            const char   *expected)
{
  const char *got = (const char *) sqlite3_column_text (st, col);

  return g_strcmp0 (got ? got : "", expected ? expected : "") == 0;
}

static gboolean
json_text_equal (const char *a,
                 const char *b)
{
  g_autoptr(JsonNode) na = NULL;
  g_autoptr(JsonNode) nb = NULL;

  if (g_strcmp0 (a, b) == 0)
    return TRUE;
  na = json_from_string (a, NULL);
  nb = json_from_string (b, NULL);
  return na != NULL && nb != NULL && json_node_equal (na, nb);
}

gboolean
od_fault_cache_matches_log (sqlite3    *db,
                            GPtrArray  *events,
                            char      **why)
{
  sqlite3_stmt *st = NULL;
  g_autoptr(GHashTable) fold = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                      (GDestroyNotify) od_order_free);
  guint i = 0;
  gint64 n_orders = 0, n_lines = 0;
  GHashTableIter iter;
  gpointer value;

  /* The history: every event of the log once, in order, nothing else. */
  g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT position, prev, order_id, version, type, data"
                                           " FROM order_events ORDER BY position",
                                       -1, &st, NULL), ==, SQLITE_OK);
  while (sqlite3_step (st) == SQLITE_ROW)
    {
      OdEvent *ev = i < events->len ? g_ptr_array_index (events, i) : NULL;

      if (ev == NULL)
        {
          *why = g_strdup_printf ("the cache has event %" G_GINT64_FORMAT " the log does not have",
                                  (gint64) sqlite3_column_int64 (st, 0));
          sqlite3_finalize (st);
          return FALSE;
        }
      if (sqlite3_column_int64 (st, 0) != ev->position || sqlite3_column_int64 (st, 1) != ev->prev
          || !text_equal (st, 2, ev->order_id) || sqlite3_column_int64 (st, 3) != ev->version
          || !text_equal (st, 4, ev->type)
          || !json_text_equal ((const char *) sqlite3_column_text (st, 5), ev->data))
        {
          *why = g_strdup_printf ("event #%u: the cache has position %" G_GINT64_FORMAT
                                  ", the log %" G_GINT64_FORMAT " (or their contents differ)",
                                  i, (gint64) sqlite3_column_int64 (st, 0), ev->position);
          sqlite3_finalize (st);
          return FALSE;
        }
      i++;
    }
  sqlite3_finalize (st);
  if (i != events->len)
    {
      *why = g_strdup_printf ("the cache has %u events, the log %u (first missing: %" G_GINT64_FORMAT ")",
                              i, events->len,
                              ((OdEvent *) g_ptr_array_index (events, i))->position);
      return FALSE;
    }

  /* The views: equal to the fold of the log. */
  for (i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);
      OdOrder *o = g_hash_table_lookup (fold, ev->order_id);

      if (o == NULL)
        {
          o = od_order_new (ev->order_id);
          g_hash_table_insert (fold, o->order_id, o);
        }
      od_order_apply (o, ev->type, od_event_get_data (ev), ev->version, ev->position,
                      ev->recorded_at);
    }
  g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT customer_name, customer_email, currency, status,"
                                           " item_count, total_cents, version, created_at,"
                                           " updated_at, last_position FROM orders"
                                           " WHERE order_id = ?", -1, &st, NULL), ==, SQLITE_OK);
  g_hash_table_iter_init (&iter, fold);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      OdOrder *o = value;
      gboolean same;

      if (o->status == OD_STATUS_NONE)
        continue;
      n_orders++;
      n_lines += o->lines->len;
      sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
      same = sqlite3_step (st) == SQLITE_ROW && text_equal (st, 0, o->customer_name)
             && text_equal (st, 1, o->customer_email) && text_equal (st, 2, o->currency)
             && text_equal (st, 3, od_order_status_name (o->status))
             && sqlite3_column_int64 (st, 4) == od_order_item_count (o)
             && sqlite3_column_int64 (st, 5) == od_order_total_cents (o)
             && sqlite3_column_int64 (st, 6) == o->version && text_equal (st, 7, o->created_at)
             && text_equal (st, 8, o->updated_at) && sqlite3_column_int64 (st, 9) == o->last_position;
      sqlite3_reset (st);
      if (!same)
        {
          *why = g_strdup_printf ("order %s differs from the fold of the log", o->order_id);
          sqlite3_finalize (st);
          return FALSE;
        }
    }
  sqlite3_finalize (st);

  g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT sku, name, quantity, unit_price_cents"
                                           " FROM order_items WHERE order_id = ? ORDER BY line_no",
                                       -1, &st, NULL), ==, SQLITE_OK);
  g_hash_table_iter_init (&iter, fold);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      OdOrder *o = value;
      guint k = 0;

      if (o->status == OD_STATUS_NONE)
        continue;
      sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
      while (sqlite3_step (st) == SQLITE_ROW)
        {
          OdLine *line = k < o->lines->len ? g_ptr_array_index (o->lines, k) : NULL;

          if (line == NULL || !text_equal (st, 0, line->sku) || !text_equal (st, 1, line->name)
              || sqlite3_column_int64 (st, 2) != line->quantity
              || sqlite3_column_int64 (st, 3) != line->unit_price_cents)
            {
              *why = g_strdup_printf ("order %s: line %u differs from the fold", o->order_id, k);
              sqlite3_finalize (st);
              return FALSE;
            }
          k++;
        }
      sqlite3_reset (st);
      if (k != o->lines->len)
        {
          *why = g_strdup_printf ("order %s has %u lines in the cache, %u in the fold", o->order_id,
                                  k, o->lines->len);
          sqlite3_finalize (st);
          return FALSE;
        }
    }
  sqlite3_finalize (st);

  if (od_fault_scalar (db, "SELECT count(*) FROM orders") != n_orders
      || od_fault_scalar (db, "SELECT count(*) FROM order_items") != n_lines)
    {
      *why = g_strdup_printf ("the cache has %" G_GINT64_FORMAT " orders and %" G_GINT64_FORMAT
                              " lines, the fold %" G_GINT64_FORMAT " and %" G_GINT64_FORMAT,
                              od_fault_scalar (db, "SELECT count(*) FROM orders"),
                              od_fault_scalar (db, "SELECT count(*) FROM order_items"), n_orders,
                              n_lines);
      return FALSE;
    }
  return TRUE;
}
