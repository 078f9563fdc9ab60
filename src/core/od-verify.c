/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-verify.h"
#include "od-cache-private.h"
#include "od-digest.h"
#include "od-http.h"
#include "od-json.h"
#include "od-order.h"
#include "od-sqlite.h"

#include <libsoup/soup.h>
#include <string.h>

/* A range this small is read again with one page and compared event by
 * event rather than bisected further: one request instead of eight. */
#define LEAF_POSITIONS 256

G_DEFINE_QUARK (od-verify-error-quark, od_verify_error)

typedef struct
{
  OdCache        *cache;
  sqlite3        *db;          /* our own read connection */
  SoupSession    *session;
  char           *url;
  char           *token;
  GCancellable   *cancellable;
  OdVerifyReport *report;
  GPtrArray      *server_events; /* OdEvent: the server's version of bad leaves */
  GHashTable     *touched;       /* order ids of events that differed */
  OdVerifyProgress progress;
  gpointer         progress_data;
  OdVerifyStepFunc step;
  gpointer         step_data;
  gboolean         paced;
} Verify;

/* The automatic run's modest pace: after each piece of work, rest as
 * long as it took (at most PACE_MAX_USEC), so it takes at most about
 * half a core from the list and sync.  The rest ends early on cancel. */
#define PACE_MAX_USEC (200 * 1000)

static void
pace (Verify *v,
      gint64  since)
{
  gint64 rest;

  if (!v->paced)
    return;
  rest = MIN (g_get_monotonic_time () - since, PACE_MAX_USEC);
  while (rest > 0 && !g_cancellable_is_cancelled (v->cancellable))
    {
      g_usleep (MIN (rest, 10000));
      rest -= 10000;
    }
}

static void
report_step (Verify       *v,
             OdVerifyStep  step,
             gint64        done,
             gint64        total)
{
  if (v->step != NULL)
    v->step (step, done, total, v->step_data);
}

void
od_verify_report_free (OdVerifyReport *report)
{
  if (report == NULL)
    return;
  g_array_unref (report->positions);
  g_ptr_array_unref (report->orders);
  g_free (report);
}

gboolean
od_verify_report_clean (const OdVerifyReport *report)
{
  return report->positions->len == 0 && report->orders->len == 0 && !report->counts_differed;
}

char *
od_verify_report_to_json (const OdVerifyReport *report)
{
  GString *out = g_string_new ("{");

  g_string_append_printf (out, "\"after\":%" G_GINT64_FORMAT ",\"upto\":%" G_GINT64_FORMAT
                          ",\"events_checked\":%" G_GINT64_FORMAT ",\"orders_checked\":%"
                          G_GINT64_FORMAT ",\"requests\":%u,\"clean\":%s,\"repaired\":%s,"
                          "\"counts_differed\":%s,\"events_seconds\":%.2f,\"views_seconds\":%.2f,"
                          "\"positions\":[",
                          report->after, report->upto, report->events_checked,
                          report->orders_checked, report->requests,
                          od_verify_report_clean (report) ? "true" : "false",
                          report->repaired ? "true" : "false",
                          report->counts_differed ? "true" : "false",
                          report->events_seconds, report->views_seconds);
  for (guint i = 0; i < report->positions->len; i++)
    g_string_append_printf (out, "%s%" G_GINT64_FORMAT, i ? "," : "",
                            g_array_index (report->positions, gint64, i));
  g_string_append (out, "],\"orders\":[");
  for (guint i = 0; i < report->orders->len; i++)
    {
      if (i > 0)
        g_string_append_c (out, ',');
      od_json_append_string (out, g_ptr_array_index (report->orders, i));
    }
  g_string_append (out, "]}");
  return g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------ */
/* The server                                                          */

static GBytes *
http_get (Verify      *v,
          const char  *path,
          GError     **error)
{
  g_autofree char *uri = g_strconcat (v->url, path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", uri);
  g_autoptr(GBytes) body = NULL;
  guint status;

  if (msg == NULL)
    {
      g_set_error (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_SERVER, "invalid server URL %s", v->url);
      return NULL;
    }
  od_http_authorize (msg, v->token);
  v->report->requests++;
  body = soup_session_send_and_read (v->session, msg, v->cancellable, error);
  if (body == NULL)
    return NULL;
  status = soup_message_get_status (msg);
  if (status != 200)
    {
      g_autoptr(OdProblem) problem = od_problem_parse (status, g_bytes_get_data (body, NULL),
                                                       g_bytes_get_size (body));

      g_set_error (error, OD_VERIFY_ERROR,
                   status == 401 || status == 403 ? OD_VERIFY_ERROR_SIGN_IN : OD_VERIFY_ERROR_SERVER,
                   "GET %s: HTTP %u: %s", path, status, problem->detail);
      return NULL;
    }
  return g_steal_pointer (&body);
}

static JsonObject *
body_object (GBytes     *body,
             JsonNode  **root,
             GError    **error)
{
  *root = od_json_parse_object (g_bytes_get_data (body, NULL), g_bytes_get_size (body), error);
  return *root ? json_node_get_object (*root) : NULL;
}

static gboolean
server_head (Verify  *v,
             gint64  *head,
             GError **error)
{
  g_autoptr(GBytes) body = http_get (v, "/v1/head", error);
  g_autoptr(JsonNode) root = NULL;
  JsonObject *o;

  if (body == NULL || (o = body_object (body, &root, error)) == NULL)
    return FALSE;
  if (!od_json_is_integer (json_object_get_member (o, "head")))
    {
      g_set_error (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_SERVER, "the server sent a malformed head");
      return FALSE;
    }
  *head = json_object_get_int_member (o, "head");
  return TRUE;
}

static gboolean
server_digest (Verify   *v,
               gint64    after,
               gint64    upto,
               gint64   *count,
               char    **sha256,
               GError  **error)
{
  g_autofree char *path = g_strdup_printf ("/v1/events/digest?after=%" G_GINT64_FORMAT "&upto=%"
                                           G_GINT64_FORMAT, after, upto);
  g_autoptr(GBytes) body = http_get (v, path, error);
  g_autoptr(JsonNode) root = NULL;
  JsonObject *o;
  JsonNode *sum;

  if (body == NULL || (o = body_object (body, &root, error)) == NULL)
    return FALSE;
  sum = json_object_get_member (o, "sha256");
  if (!od_json_is_integer (json_object_get_member (o, "count")) || !od_json_is_string (sum)
      || json_object_get_int_member (o, "upto") != upto)
    {
      g_set_error (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_SERVER,
                   "the server sent a malformed digest for %" G_GINT64_FORMAT "..%" G_GINT64_FORMAT,
                   after, upto);
      return FALSE;
    }
  *count = json_object_get_int_member (o, "count");
  *sha256 = g_strdup (json_node_get_string (sum));
  return TRUE;
}

/* The server's events with after < position <= upto, data as sent. */
static GPtrArray *
server_events (Verify  *v,
               gint64   after,
               gint64   upto,
               GError **error)
{
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);

  while (after < upto)
    {
      g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT "&limit=%d",
                                               after, (int) MIN (upto - after, 10000));
      g_autoptr(GBytes) body = http_get (v, path, error);
      g_autoptr(JsonNode) root = NULL;
      g_autoptr(GArray) spans = NULL;
      JsonObject *o;
      JsonArray *array;
      const char *text;
      guint n;

      if (body == NULL || (o = body_object (body, &root, error)) == NULL)
        return NULL;
      array = json_object_get_array_member (o, "events");
      text = g_bytes_get_data (body, NULL);
      spans = od_json_raw_elements (text, g_bytes_get_size (body), "events");
      n = array ? json_array_get_length (array) : 0;
      if (array == NULL || spans == NULL || spans->len != 2 * n)
        {
          g_set_error (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_SERVER,
                       "the server sent a malformed page of events");
          return NULL;
        }
      if (n == 0)
        break;
      for (guint i = 0; i < n; i++)
        {
          JsonNode *node = json_array_get_element (array, i);
          OdEvent *ev = od_json_is_object (node)
                          ? od_event_from_object (json_node_get_object (node), error)
                          : NULL;

          if (ev == NULL)
            return NULL;
          od_event_keep_raw_data (ev, text + g_array_index (spans, gsize, 2 * i),
                                  g_array_index (spans, gsize, 2 * i + 1));
          after = ev->position;
          if (ev->position > upto)
            {
              od_event_free (ev);
              return g_steal_pointer (&events);
            }
          g_ptr_array_add (events, ev);
        }
    }
  return g_steal_pointer (&events);
}

/* ------------------------------------------------------------------ */
/* The cache, through our own connection                               */

static gboolean
sql_failed (Verify     *v,
            GError    **error,
            const char *what)
{
  od_sqlite_set_error (error, v->db, what);
  return FALSE;
}

static gboolean
local_digest (Verify  *v,
              gint64   after,
              gint64   upto,
              gint64  *count,
              char   **sha256,
              GError **error)
{
  g_autoptr(OdDigest) sum = od_digest_new ();
  char hex[OD_DIGEST_HEX_LEN + 1];
  sqlite3_stmt *st = NULL;
  int rc;

  if (sqlite3_prepare_v2 (v->db,
                          "SELECT position, order_id, version, type, recorded_at, actor, data"
                          " FROM order_events WHERE position > ?1 AND position <= ?2"
                          " ORDER BY position", -1, &st, NULL) != SQLITE_OK)
    return sql_failed (v, error, "digest");
  sqlite3_bind_int64 (st, 1, after);
  sqlite3_bind_int64 (st, 2, upto);
  *count = 0;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      od_digest_add_event (sum, sqlite3_column_int64 (st, 0),
                           (const char *) sqlite3_column_text (st, 1),
                           sqlite3_column_int64 (st, 2),
                           (const char *) sqlite3_column_text (st, 3),
                           (const char *) sqlite3_column_text (st, 4),
                           (const char *) sqlite3_column_text (st, 5),
                           (const char *) sqlite3_column_text (st, 6),
                           sqlite3_column_bytes (st, 6));
      (*count)++;
    }
  sqlite3_finalize (st);
  if (rc != SQLITE_DONE)
    return sql_failed (v, error, "digest");
  od_digest_finish (sum, hex);
  *sha256 = g_strdup (hex);
  return TRUE;
}

static OdEvent *
event_from_row (sqlite3_stmt *st)
{
  OdEvent *ev = od_event_new ();

  ev->position = sqlite3_column_int64 (st, 0);
  ev->prev = sqlite3_column_int64 (st, 1);
  g_strlcpy (ev->order_id, (const char *) sqlite3_column_text (st, 2), sizeof ev->order_id);
  ev->version = sqlite3_column_int64 (st, 3);
  ev->type = g_strdup ((const char *) sqlite3_column_text (st, 4));
  ev->recorded_at = g_strdup ((const char *) sqlite3_column_text (st, 5));
  ev->actor = g_strdup ((const char *) sqlite3_column_text (st, 6));
  ev->data = g_strdup ((const char *) sqlite3_column_text (st, 7));
  return ev;
}

#define EVENT_COLUMNS "position, prev, order_id, version, type, recorded_at, actor, data"

static GPtrArray *
local_events (sqlite3 *db,
              gint64   after,
              gint64   upto,
              gint64   limit)
{
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  sqlite3_stmt *st = NULL;

  if (sqlite3_prepare_v2 (db, "SELECT " EVENT_COLUMNS " FROM order_events"
                          " WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3",
                          -1, &st, NULL) != SQLITE_OK)
    return events;
  sqlite3_bind_int64 (st, 1, after);
  sqlite3_bind_int64 (st, 2, upto);
  sqlite3_bind_int64 (st, 3, limit);
  while (sqlite3_step (st) == SQLITE_ROW)
    g_ptr_array_add (events, event_from_row (st));
  sqlite3_finalize (st);
  return events;
}

static OdEvent *
event_copy (const OdEvent *ev)
{
  OdEvent *copy = od_event_new ();

  copy->position = ev->position;
  copy->prev = ev->prev;
  memcpy (copy->order_id, ev->order_id, sizeof copy->order_id);
  copy->version = ev->version;
  copy->type = g_strdup (ev->type);
  copy->recorded_at = g_strdup (ev->recorded_at);
  copy->actor = g_strdup (ev->actor);
  copy->data = g_strdup (ev->data);
  return copy;
}

static gboolean
events_equal (const OdEvent *a,
              const OdEvent *b)
{
  return a->position == b->position && a->prev == b->prev && a->version == b->version
         && strcmp (a->order_id, b->order_id) == 0 && g_strcmp0 (a->type, b->type) == 0
         && g_strcmp0 (a->recorded_at, b->recorded_at) == 0 && g_strcmp0 (a->actor, b->actor) == 0
         && g_strcmp0 (a->data, b->data) == 0;
}

static void
note_position (Verify *v,
               gint64  position)
{
  g_array_append_val (v->report->positions, position);
}

/* Compares a small range event by event. */
static gboolean
compare_leaf (Verify  *v,
              gint64   after,
              gint64   upto,
              GError **error)
{
  g_autoptr(GPtrArray) theirs = server_events (v, after, upto, error);
  g_autoptr(GPtrArray) ours = NULL;
  guint i = 0, j = 0;

  if (theirs == NULL)
    return FALSE;
  ours = local_events (v->db, after, upto, -1);
  while (i < ours->len || j < theirs->len)
    {
      OdEvent *a = i < ours->len ? g_ptr_array_index (ours, i) : NULL;
      OdEvent *b = j < theirs->len ? g_ptr_array_index (theirs, j) : NULL;

      if (a != NULL && (b == NULL || a->position < b->position))
        {
          /* Ours only: an event the server never had. */
          note_position (v, a->position);
          g_hash_table_add (v->touched, g_strdup (a->order_id));
          i++;
        }
      else if (b != NULL && (a == NULL || b->position < a->position))
        {
          note_position (v, b->position);
          g_hash_table_add (v->touched, g_strdup (b->order_id));
          g_ptr_array_add (v->server_events, event_copy (b));
          j++;
        }
      else
        {
          if (!events_equal (a, b))
            {
              note_position (v, a->position);
              g_hash_table_add (v->touched, g_strdup (a->order_id));
              g_hash_table_add (v->touched, g_strdup (b->order_id));
              g_ptr_array_add (v->server_events, event_copy (b));
            }
          i++, j++;
        }
    }
  return TRUE;
}

/* Bisects [after, upto] down to the events that differ.  known_bad: the
 * caller already knows this range differs (its parent differed and its
 * sibling did not), so no digest is asked for it. */
static gboolean
check_range (Verify   *v,
             gint64    after,
             gint64    upto,
             gboolean  known_bad,
             GError  **error)
{
  g_autofree char *ours = NULL;
  g_autofree char *theirs = NULL;
  gint64 n_ours, n_theirs, mid;
  gboolean left_bad;

  if (g_cancellable_set_error_if_cancelled (v->cancellable, error))
    return FALSE;
  if (upto <= after)
    return TRUE;
  if (!known_bad)
    {
      if (!local_digest (v, after, upto, &n_ours, &ours, error)
          || !server_digest (v, after, upto, &n_theirs, &theirs, error))
        return FALSE;
      if (n_ours == n_theirs && strcmp (ours, theirs) == 0)
        return TRUE;
    }
  if (upto - after <= LEAF_POSITIONS)
    return compare_leaf (v, after, upto, error);
  mid = after + (upto - after) / 2;
  {
    g_autofree char *l_ours = NULL;
    g_autofree char *l_theirs = NULL;
    gint64 l_n_ours, l_n_theirs;

    if (!local_digest (v, after, mid, &l_n_ours, &l_ours, error)
        || !server_digest (v, after, mid, &l_n_theirs, &l_theirs, error))
      return FALSE;
    left_bad = l_n_ours != l_n_theirs || strcmp (l_ours, l_theirs) != 0;
  }
  if (left_bad && !check_range (v, after, mid, TRUE, error))
    return FALSE;
  /* When the left half matches, the right one must differ. */
  return check_range (v, mid, upto, !left_bad, error);
}

/* The cache's first events must be the server's: a cache made from
 * another log (a server restored from another backup, another server at
 * the same URL) shares no event with it, and is refused rather than
 * "repaired" into a mix of two logs.  A few edited or missing events do
 * not make a foreign log: their neighbours still match. */
static gboolean
check_same_log (Verify  *v,
                gint64   upto,
                GError **error)
{
  g_autoptr(GPtrArray) ours = local_events (v->db, 0, upto, 16);
  g_autoptr(GPtrArray) theirs = NULL;
  guint n = MIN (ours->len, 16), matched = 0;

  if (n == 0)
    return TRUE;
  theirs = server_events (v, 0, ((OdEvent *) g_ptr_array_index (ours, n - 1))->position, error);
  if (theirs == NULL)
    return FALSE;
  for (guint i = 0; i < n; i++)
    {
      OdEvent *a = g_ptr_array_index (ours, i);

      for (guint j = 0; j < theirs->len; j++)
        {
          OdEvent *b = g_ptr_array_index (theirs, j);

          if (b->position == a->position && strcmp (b->order_id, a->order_id) == 0
              && g_strcmp0 (b->recorded_at, a->recorded_at) == 0)
            matched++;
        }
    }
  if (matched * 2 < n)
    {
      g_set_error (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_FOREIGN_LOG,
                   "not this server's log: %u of the cache's first %u events are not the "
                   "server's; make a new cache for this server", n - matched, n);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Views: the fold of the stored events                                */

/* Statements of the re-fold, prepared once per connection: preparing
 * them per order was most of the time of a re-fold. */
typedef struct
{
  sqlite3_stmt *events;
  sqlite3_stmt *order;
  sqlite3_stmt *items;
  sqlite3_stmt *mark;
} Stmts;

static void
stmts_clear (Stmts *s)
{
  g_clear_pointer (&s->events, sqlite3_finalize);
  g_clear_pointer (&s->order, sqlite3_finalize);
  g_clear_pointer (&s->items, sqlite3_finalize);
  g_clear_pointer (&s->mark, sqlite3_finalize);
}

typedef struct
{
  OdOrder *order;
  char    *reason;        /* the contract break that stopped it, or NULL */
  gint64   mark_version;
  gint64   mark_position;
} Folded;

static void
folded_clear (Folded *f)
{
  g_clear_pointer (&f->order, od_order_free);
  g_clear_pointer (&f->reason, g_free);
}

/* Folds one order from order_events as the projector does: the same
 * od_order_apply, the same contract checks, nothing applied after the
 * first break. */
static gboolean
fold_order (sqlite3     *db,
            Stmts       *stmts,
            const char  *order_id,
            Folded      *f,
            GError     **error)
{
  sqlite3_stmt *st;
  int rc;

  memset (f, 0, sizeof *f);
  f->order = od_order_new (order_id);
  st = od_sqlite_reuse (db, &stmts->events,
                       "SELECT " EVENT_COLUMNS " FROM order_events WHERE order_id = ?1"
                       " ORDER BY position", error);
  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      g_autoptr(OdEvent) ev = event_from_row (st);

      if (f->reason == NULL)
        {
          f->reason = od_cache_contract_break (f->order, ev);
          if (f->reason != NULL)
            {
              f->mark_version = f->order->version;
              f->mark_position = ev->position;
            }
        }
      if (f->reason == NULL)
        od_order_apply (f->order, ev->type, od_event_get_data (ev), ev->version, ev->position,
                        ev->recorded_at);
    }
  sqlite3_reset (st);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, db, "fold");
      return FALSE;
    }
  return TRUE;
}

static const char *
or_empty (const char *s)
{
  return s ? s : "";
}

/* Whether the cache's rows for the order are the fold's. */
static gboolean
order_matches (sqlite3 *db,
               Stmts   *stmts,
               Folded  *f)
{
  OdOrder *o = f->order;
  sqlite3_stmt *st;
  gboolean same = TRUE, found;
  guint n = 0;

  st = od_sqlite_reuse (db, &stmts->order,
                       "SELECT customer_name, customer_email, currency, status, item_count,"
                       " total_cents, version, created_at, updated_at, last_position, carrier,"
                       " tracking_number, cancel_reason, refunded_cents, note_count FROM orders"
                       " WHERE order_id = ?1", NULL);
  sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
  found = sqlite3_step (st) == SQLITE_ROW;
  if (found != (o->status != OD_STATUS_NONE))
    same = FALSE;
  else if (found)
    same = g_strcmp0 ((const char *) sqlite3_column_text (st, 0), or_empty (o->customer_name)) == 0
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 1), or_empty (o->customer_email)) == 0
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 2), or_empty (o->currency)) == 0
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 3), od_order_status_name (o->status)) == 0
           && sqlite3_column_int64 (st, 4) == od_order_item_count (o)
           && sqlite3_column_int64 (st, 5) == od_order_total_cents (o)
           && sqlite3_column_int64 (st, 6) == o->version
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 7), or_empty (o->created_at)) == 0
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 8), or_empty (o->updated_at)) == 0
           && sqlite3_column_int64 (st, 9) == o->last_position
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 10), o->carrier) == 0
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 11), o->tracking_number) == 0
           && g_strcmp0 ((const char *) sqlite3_column_text (st, 12), o->cancel_reason) == 0
           && sqlite3_column_int64 (st, 13) == o->refunded_cents
           && sqlite3_column_int64 (st, 14) == o->note_count;
  sqlite3_reset (st);
  if (!same)
    return FALSE;

  st = od_sqlite_reuse (db, &stmts->items,
                       "SELECT sku, name, quantity, unit_price_cents FROM order_items"
                       " WHERE order_id = ?1 ORDER BY line_no", NULL);
  sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
  while (same && sqlite3_step (st) == SQLITE_ROW)
    {
      OdLine *line = n < o->lines->len ? g_ptr_array_index (o->lines, n) : NULL;

      same = line != NULL
             && g_strcmp0 ((const char *) sqlite3_column_text (st, 0), line->sku) == 0
             && g_strcmp0 ((const char *) sqlite3_column_text (st, 1), or_empty (line->name)) == 0
             && sqlite3_column_int64 (st, 2) == line->quantity
             && sqlite3_column_int64 (st, 3) == line->unit_price_cents;
      n++;
    }
  sqlite3_reset (st);
  if (!same || n != (found ? o->lines->len : 0))
    return FALSE;

  st = od_sqlite_reuse (db, &stmts->mark,
                       "SELECT version, position FROM inconsistent_orders WHERE order_id = ?1",
                       NULL);
  sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
  found = sqlite3_step (st) == SQLITE_ROW;
  if (found != (f->reason != NULL))
    same = FALSE;
  else if (found)
    same = sqlite3_column_int64 (st, 0) == f->mark_version
           && sqlite3_column_int64 (st, 1) == f->mark_position;
  sqlite3_reset (st);
  return same;
}

static gboolean
counts_match (sqlite3 *db)
{
  sqlite3_stmt *st = NULL;
  gboolean same = TRUE;

  sqlite3_prepare_v2 (db, "SELECT count(*) FROM status_counts c WHERE c.n <>"
                      " (SELECT count(*) FROM orders o WHERE o.status = c.status)", -1, &st, NULL);
  if (sqlite3_step (st) != SQLITE_ROW || sqlite3_column_int64 (st, 0) != 0)
    same = FALSE;
  sqlite3_finalize (st);
  return same;
}

static gboolean
check_views (Verify  *v,
             gboolean all,
             GError **error)
{
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  Stmts stmts = { 0 };
  sqlite3_stmt *st = NULL;
  GHashTableIter iter;
  gpointer key;
  gint64 chunk_start = g_get_monotonic_time ();

  if (all)
    sqlite3_prepare_v2 (v->db, "SELECT order_id FROM orders UNION SELECT order_id FROM order_events",
                        -1, &st, NULL);
  else
    {
      sqlite3_prepare_v2 (v->db, "SELECT DISTINCT order_id FROM order_events"
                          " WHERE position > ?1 AND position <= ?2", -1, &st, NULL);
      sqlite3_bind_int64 (st, 1, v->report->after);
      sqlite3_bind_int64 (st, 2, v->report->upto);
    }
  while (sqlite3_step (st) == SQLITE_ROW)
    {
      const char *id = (const char *) sqlite3_column_text (st, 0);

      if (!g_hash_table_contains (v->touched, id))
        g_ptr_array_add (ids, g_strdup (id));
    }
  sqlite3_finalize (st);
  /* Orders of events that differed are checked whatever the range. */
  g_hash_table_iter_init (&iter, v->touched);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (ids, g_strdup (key));

  for (guint i = 0; i < ids->len; i++)
    {
      Folded f;
      gboolean same;

      if ((i % 4096) == 0 && g_cancellable_set_error_if_cancelled (v->cancellable, error))
        {
          stmts_clear (&stmts);
          return FALSE;
        }
      if (!fold_order (v->db, &stmts, g_ptr_array_index (ids, i), &f, error))
        {
          stmts_clear (&stmts);
          return FALSE;
        }
      same = order_matches (v->db, &stmts, &f);
      folded_clear (&f);
      if (!same)
        g_ptr_array_add (v->report->orders, g_strdup (g_ptr_array_index (ids, i)));
      if (v->progress != NULL && (i % 4096) == 0)
        v->progress (0.5 + 0.5 * i / ids->len, v->progress_data);
      if ((i % 1024) == 1023)
        {
          report_step (v, OD_VERIFY_STEP_VIEWS, i + 1, ids->len);
          pace (v, chunk_start);
          chunk_start = g_get_monotonic_time ();
        }
    }
  report_step (v, OD_VERIFY_STEP_VIEWS, ids->len, ids->len);
  stmts_clear (&stmts);
  v->report->orders_checked = ids->len;
  v->report->counts_differed = !counts_match (v->db);
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Repair, on the cache's writer                                       */

typedef struct
{
  GArray    *positions;   /* events to drop */
  GPtrArray *events;      /* the server's, to store */
  GPtrArray *orders;      /* to fold again and rewrite */
  gint64     after, upto, events_checked;
  char      *result;
  char      *report_json;
} Repair;

static void
repair_free (Repair *r)
{
  g_clear_pointer (&r->positions, g_array_unref);
  g_clear_pointer (&r->events, g_ptr_array_unref);
  g_clear_pointer (&r->orders, g_ptr_array_unref);
  g_free (r->result);
  g_free (r->report_json);
  g_free (r);
}

static gboolean
run_sql (sqlite3     *db,
         const char  *sql,
         const char  *text,
         gint64       num,
         GError     **error)
{
  sqlite3_stmt *st = NULL;

  st = od_sqlite_prepare (db, sql, error);
  if (st == NULL)
    return FALSE;
  if (text != NULL)
    sqlite3_bind_text (st, 1, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_int64 (st, 1, num);
  return od_sqlite_run (db, st, sql, error);
}

static void
bind_or_null (sqlite3_stmt *st,
              int           col,
              const char   *text)
{
  if (text != NULL)
    sqlite3_bind_text (st, col, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null (st, col);
}

/* Rewrites one order's rows from a fold made inside this transaction, so
 * that events applied since the check are in it. */
gboolean
od_verify_rewrite_order (sqlite3     *db,
                         const char  *order_id,
                         GError     **error)
{
  Folded f;
  Stmts stmts = { 0 };
  sqlite3_stmt *st = NULL;
  gint64 rowid = 0;
  g_autofree char *old_name = NULL;
  g_autofree char *old_email = NULL;
  gboolean ok = TRUE;
  OdOrder *o;

  ok = fold_order (db, &stmts, order_id, &f, error);
  stmts_clear (&stmts);
  if (!ok)
    {
      folded_clear (&f);
      return FALSE;
    }
  o = f.order;
  sqlite3_prepare_v2 (db, "SELECT rowid, customer_name, customer_email FROM orders"
                      " WHERE order_id = ?1", -1, &st, NULL);
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW)
    {
      rowid = sqlite3_column_int64 (st, 0);
      old_name = g_strdup ((const char *) sqlite3_column_text (st, 1));
      old_email = g_strdup ((const char *) sqlite3_column_text (st, 2));
    }
  sqlite3_finalize (st);

  /* The search index is contentless: an entry goes with the values it
   * was made from. */
  if (rowid != 0 && (o->status == OD_STATUS_NONE || g_strcmp0 (old_name, or_empty (o->customer_name)) != 0
                     || g_strcmp0 (old_email, or_empty (o->customer_email)) != 0))
    {
      sqlite3_prepare_v2 (db, "INSERT INTO order_search (order_search, rowid, customer_name,"
                          " customer_email) VALUES ('delete', ?1, ?2, ?3)", -1, &st, NULL);
      sqlite3_bind_int64 (st, 1, rowid);
      sqlite3_bind_text (st, 2, old_name, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 3, old_email, -1, SQLITE_STATIC);
      ok = sqlite3_step (st) == SQLITE_DONE;
      sqlite3_finalize (st);
      if (ok && o->status != OD_STATUS_NONE)
        {
          sqlite3_prepare_v2 (db, "INSERT INTO order_search (rowid, customer_name, customer_email)"
                              " VALUES (?1, ?2, ?3)", -1, &st, NULL);
          sqlite3_bind_int64 (st, 1, rowid);
          sqlite3_bind_text (st, 2, or_empty (o->customer_name), -1, SQLITE_STATIC);
          sqlite3_bind_text (st, 3, or_empty (o->customer_email), -1, SQLITE_STATIC);
          ok = sqlite3_step (st) == SQLITE_DONE;
          sqlite3_finalize (st);
        }
    }
  ok = ok && run_sql (db, "DELETE FROM order_items WHERE order_id = ?1", order_id, 0, error);
  if (ok && o->status == OD_STATUS_NONE)
    ok = run_sql (db, "DELETE FROM orders WHERE order_id = ?1", order_id, 0, error);
  else if (ok)
    {
      /* An update for an existing row (the triggers move the counts and,
       * for a new row, add it to the search index). */
      sqlite3_prepare_v2 (db,
                          rowid != 0
                            ? "UPDATE orders SET customer_name = ?2, customer_email = ?3,"
                              " currency = ?4, status = ?5, item_count = ?6, total_cents = ?7,"
                              " version = ?8, created_at = ?9, updated_at = ?10,"
                              " last_position = ?11, carrier = ?12, tracking_number = ?13,"
                              " cancel_reason = ?14, refunded_cents = ?15, note_count = ?16"
                              " WHERE order_id = ?1"
                            : "INSERT INTO orders (order_id, customer_name, customer_email,"
                              " currency, status, item_count, total_cents, version, created_at,"
                              " updated_at, last_position, carrier, tracking_number, cancel_reason,"
                              " refunded_cents, note_count)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                              " ?15, ?16)",
                          -1, &st, NULL);
      sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 2, or_empty (o->customer_name), -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 3, or_empty (o->customer_email), -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 4, or_empty (o->currency), -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 5, od_order_status_name (o->status), -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 6, od_order_item_count (o));
      sqlite3_bind_int64 (st, 7, od_order_total_cents (o));
      sqlite3_bind_int64 (st, 8, o->version);
      sqlite3_bind_text (st, 9, or_empty (o->created_at), -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 10, or_empty (o->updated_at), -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 11, o->last_position);
      bind_or_null (st, 12, o->carrier);
      bind_or_null (st, 13, o->tracking_number);
      bind_or_null (st, 14, o->cancel_reason);
      sqlite3_bind_int64 (st, 15, o->refunded_cents);
      sqlite3_bind_int64 (st, 16, o->note_count);
      ok = sqlite3_step (st) == SQLITE_DONE;
      sqlite3_finalize (st);
      for (guint i = 0; ok && i < o->lines->len; i++)
        {
          OdLine *line = g_ptr_array_index (o->lines, i);

          sqlite3_prepare_v2 (db, "INSERT INTO order_items (order_id, sku, name, quantity,"
                              " unit_price_cents, line_no) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                              -1, &st, NULL);
          sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
          sqlite3_bind_text (st, 2, line->sku, -1, SQLITE_STATIC);
          sqlite3_bind_text (st, 3, or_empty (line->name), -1, SQLITE_STATIC);
          sqlite3_bind_int64 (st, 4, line->quantity);
          sqlite3_bind_int64 (st, 5, line->unit_price_cents);
          sqlite3_bind_int (st, 6, i);
          ok = sqlite3_step (st) == SQLITE_DONE;
          sqlite3_finalize (st);
        }
    }
  /* The mark goes (or comes) with the fold: a clean re-fold clears it. */
  ok = ok && run_sql (db, "DELETE FROM inconsistent_orders WHERE order_id = ?1", order_id, 0, error);
  if (ok && f.reason != NULL)
    {
      sqlite3_prepare_v2 (db, "INSERT INTO inconsistent_orders (order_id, version, position, reason)"
                          " VALUES (?1, ?2, ?3, ?4)", -1, &st, NULL);
      sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 2, f.mark_version);
      sqlite3_bind_int64 (st, 3, f.mark_position);
      sqlite3_bind_text (st, 4, f.reason, -1, SQLITE_STATIC);
      ok = sqlite3_step (st) == SQLITE_DONE;
      sqlite3_finalize (st);
    }
  if (!ok && error != NULL && *error == NULL)
    od_sqlite_set_error (error, db, "repair order");
  folded_clear (&f);
  return ok;
}

/* Whether a query (one bound parameter) finds a row: here, whether an
 * event or order the repair touches is or has a note. */
static gboolean
has_note (sqlite3    *db,
          const char *sql,
          const char *text,
          gint64      num)
{
  sqlite3_stmt *st = NULL;
  gboolean found;

  sqlite3_prepare_v2 (db, sql, -1, &st, NULL);
  if (text != NULL)
    sqlite3_bind_text (st, 1, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_int64 (st, 1, num);
  found = sqlite3_step (st) == SQLITE_ROW;
  sqlite3_finalize (st);
  return found;
}

/* note_search is contentless: an entry can only be deleted with the text
 * it was made from, which a damaged cache cannot tell (the stored event
 * may have been edited after it was indexed, or indexed wrong).  So a
 * repair that touches notes makes the index again from the repaired
 * events, as the writer would have (an inconsistent order's notes up to
 * its break).  Notes are few next to orders. */
static gboolean
rebuild_note_search (sqlite3  *db,
                     GError  **error)
{
  return run_sql (db, "INSERT INTO note_search (note_search) SELECT 'delete-all' WHERE ?1 = 1",
                  NULL, 1, error)
         && run_sql (db, "INSERT INTO note_search (rowid, text)"
                     " SELECT e.position, json_extract (e.data, '$.text') FROM order_events e"
                     " LEFT JOIN inconsistent_orders i ON i.order_id = e.order_id"
                     " WHERE e.type = 'OrderNoteAdded' AND json_type (e.data, '$.text') = 'text'"
                     " AND (i.order_id IS NULL OR e.position < i.position) AND ?1 = 1",
                     NULL, 1, error);
}

static gboolean
repair_in_writer (sqlite3   *db,
                  gpointer   data,
                  gpointer  *result,
                  GError   **error)
{
  Repair *r = data;
  sqlite3_stmt *st = NULL;
  gint64 applied = 0;
  gboolean ok = TRUE, notes = FALSE;

  if (r->positions != NULL)
    {
      applied = od_sqlite_query_int64 (db, "SELECT applied_position FROM sync_state WHERE id = 1", 0);
      for (guint i = 0; ok && i < r->positions->len; i++)
        {
          gint64 position = g_array_index (r->positions, gint64, i);

          /* Above the applied position only events nobody applied can be
           * extra; below it, what sync applied since the check is the
           * server's and stays. */
          notes = notes || has_note (db, "SELECT 1 FROM order_events WHERE position = ?1"
                                     " AND type = 'OrderNoteAdded'", NULL, position);
          ok = run_sql (db, "DELETE FROM order_events WHERE position = ?1", NULL, position, error);
        }
      notes = notes || has_note (db, "SELECT 1 FROM order_events WHERE position > ?1"
                                 " AND type = 'OrderNoteAdded' LIMIT 1", NULL, applied);
      ok = ok && run_sql (db, "DELETE FROM order_events WHERE position > ?1", NULL, applied, error);
      for (guint i = 0; ok && i < r->events->len; i++)
        {
          OdEvent *ev = g_ptr_array_index (r->events, i);

          if (ev->position > applied)
            continue;
          notes = notes || g_strcmp0 (ev->type, "OrderNoteAdded") == 0;
          sqlite3_prepare_v2 (db, "INSERT INTO order_events (" EVENT_COLUMNS ")"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, &st, NULL);
          sqlite3_bind_int64 (st, 1, ev->position);
          sqlite3_bind_int64 (st, 2, ev->prev);
          sqlite3_bind_text (st, 3, ev->order_id, -1, SQLITE_STATIC);
          sqlite3_bind_int64 (st, 4, ev->version);
          sqlite3_bind_text (st, 5, ev->type, -1, SQLITE_STATIC);
          sqlite3_bind_text (st, 6, ev->recorded_at, -1, SQLITE_STATIC);
          sqlite3_bind_text (st, 7, ev->actor, -1, SQLITE_STATIC);
          sqlite3_bind_text (st, 8, ev->data, -1, SQLITE_STATIC);
          ok = sqlite3_step (st) == SQLITE_DONE;
          sqlite3_finalize (st);
          if (!ok)
            od_sqlite_set_error (error, db, "repair event");
        }
    }
  for (guint i = 0; ok && r->orders != NULL && i < r->orders->len; i++)
    {
      const char *order_id = g_ptr_array_index (r->orders, i);

      /* A re-fold can mark or clear an order inconsistent, which decides
       * whether its notes are searchable. */
      notes = notes || has_note (db, "SELECT 1 FROM order_events WHERE order_id = ?1"
                                 " AND type = 'OrderNoteAdded' LIMIT 1", order_id, 0);
      ok = od_verify_rewrite_order (db, order_id, error);
    }
  if (ok && notes)
    ok = rebuild_note_search (db, error);
  if (ok && r->orders != NULL)
    ok = run_sql (db, "UPDATE status_counts SET n = (SELECT count(*) FROM orders o"
                  " WHERE o.status = status_counts.status) WHERE ?1 = 1", NULL, 1, error);
  if (ok)
    {
      sqlite3_prepare_v2 (db, "INSERT INTO verify_runs (verified_at, after_position, upto_position,"
                          " events_checked, result, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                          -1, &st, NULL);
      sqlite3_bind_int64 (st, 1, g_get_real_time ());
      sqlite3_bind_int64 (st, 2, r->after);
      sqlite3_bind_int64 (st, 3, r->upto);
      sqlite3_bind_int64 (st, 4, r->events_checked);
      sqlite3_bind_text (st, 5, r->result, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 6, r->report_json, -1, SQLITE_STATIC);
      ok = sqlite3_step (st) == SQLITE_DONE;
      sqlite3_finalize (st);
      if (!ok)
        od_sqlite_set_error (error, db, "record verification");
    }
  return ok;
}

typedef struct
{
  gboolean done;
  gboolean ok;
  GError  *error;
} Wait;

static void
write_done (GObject      *source,
            GAsyncResult *res,
            gpointer      user_data)
{
  Wait *w = user_data;

  od_cache_write_finish (OD_CACHE (source), res, &w->error);
  w->ok = w->error == NULL;
  w->done = TRUE;
}

/* Through the cache's writer, waited for here: sync's batches go on
 * before and after it, never blocked by our reads. */
static gboolean
write_and_wait (OdCache  *cache,
                Repair   *r,
                GError  **error)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  Wait w = { FALSE, FALSE, NULL };

  g_main_context_push_thread_default (context);
  od_cache_write_async_full (cache, TRUE, repair_in_writer, r, NULL, NULL, write_done, &w);
  while (!w.done)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  if (!w.ok)
    g_propagate_error (error, w.error);
  return w.ok;
}

static gint64
last_verified (sqlite3 *db)
{
  return od_sqlite_query_int64 (db, "SELECT upto_position FROM verify_runs"
                                " WHERE result IN ('clean', 'repaired') ORDER BY id DESC LIMIT 1", 0);
}

static OdVerifyReport *
verify_run (OdCache          *cache,
            const char       *server_url,
            const char       *token,
            GTlsDatabase     *tls_database,
            gint64            after,
            gboolean          repair,
            OdVerifyProgress  progress,
            gpointer          progress_data,
            OdVerifyStepFunc  step,
            gpointer          step_data,
            gboolean          paced,
            GCancellable     *cancellable,
            GError          **error)
{
  g_autoptr(OdVerifyReport) report = g_new0 (OdVerifyReport, 1);
  Verify v = { 0 };
  gint64 head = 0, applied = 0, start, extra = 0, range;
  sqlite3_stmt *st = NULL;
  gboolean ok = FALSE, all;
  g_autoptr(GError) write_error = NULL;
  Repair *r;

  report->positions = g_array_new (FALSE, FALSE, sizeof (gint64));
  report->orders = g_ptr_array_new_with_free_func (g_free);
  v.cache = cache;
  v.report = report;
  v.url = g_strdup (server_url);
  v.token = g_strdup (token);
  v.cancellable = cancellable;
  v.progress = progress;
  v.progress_data = progress_data;
  v.step = step;
  v.step_data = step_data;
  v.paced = paced;
  v.server_events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  v.touched = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  v.session = soup_session_new_with_options ("timeout", 120, "idle-timeout", 30, NULL);
  if (tls_database != NULL)
    soup_session_set_tls_database (v.session, tls_database);
  if (v.url != NULL)
    while (g_str_has_suffix (v.url, "/"))
      v.url[strlen (v.url) - 1] = '\0';

  if (sqlite3_open_v2 (od_cache_get_path (cache), &v.db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                       NULL) != SQLITE_OK)
    {
      od_sqlite_set_error (error, v.db, "open the cache");
      goto out;
    }
  sqlite3_busy_timeout (v.db, 10000);
  /* One read transaction: events and views are one snapshot, whatever
   * sync commits meanwhile.  The server's head is read after it: heads
   * only grow, so a head read before could be below what sync applied
   * in between, and look like a shorter, foreign log. */
  if (!od_sqlite_exec (v.db, "BEGIN", "read the cache", error)
      || (st = od_sqlite_prepare (v.db, "SELECT applied_position FROM sync_state WHERE id = 1",
                                  error)) == NULL)
    goto out;
  if (sqlite3_step (st) == SQLITE_ROW)
    applied = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  if (!server_head (&v, &head, error))
    goto out;
  all = after < 0 ? FALSE : after == 0;
  if (after < 0)
    after = last_verified (v.db);
  report->after = MIN (after, applied);
  report->upto = MIN (applied, head);
  if (applied > head)
    {
      g_set_error (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_FOREIGN_LOG,
                   "not this server's log: the cache has applied %" G_GINT64_FORMAT
                   " but the server's head is %" G_GINT64_FORMAT "; make a new cache for this server",
                   applied, head);
      goto out;
    }
  if (!check_same_log (&v, report->upto, error))
    goto out;

  start = g_get_monotonic_time ();
  /* With a step callback (the console), ranges of about a fiftieth of the
   * whole: the progress moves, and a paced run rests between them. */
  range = OD_DIGEST_MAX_RANGE;
  if (step != NULL)
    range = CLAMP ((report->upto - report->after) / 50, 10000, OD_DIGEST_MAX_RANGE);
  report_step (&v, OD_VERIFY_STEP_EVENTS, 0, report->upto - report->after);
  for (gint64 a = report->after; a < report->upto; a += range)
    {
      gint64 chunk_start = g_get_monotonic_time ();

      if (!check_range (&v, a, MIN (a + range, report->upto), FALSE, error))
        goto out;
      if (progress != NULL)
        progress (0.5 * (a - report->after) / MAX (report->upto - report->after, 1), progress_data);
      report_step (&v, OD_VERIFY_STEP_EVENTS, MIN (a + range, report->upto) - report->after,
                   report->upto - report->after);
      pace (&v, chunk_start);
    }
  /* Events above the applied position were never applied by sync: extra. */
  sqlite3_prepare_v2 (v.db, "SELECT position, order_id FROM order_events WHERE position > ?1",
                      -1, &st, NULL);
  sqlite3_bind_int64 (st, 1, applied);
  while (sqlite3_step (st) == SQLITE_ROW)
    {
      note_position (&v, sqlite3_column_int64 (st, 0));
      g_hash_table_add (v.touched, g_strdup ((const char *) sqlite3_column_text (st, 1)));
      extra++;
    }
  sqlite3_finalize (st);
  sqlite3_prepare_v2 (v.db, "SELECT count(*) FROM order_events WHERE position > ?1 AND position <= ?2",
                      -1, &st, NULL);
  sqlite3_bind_int64 (st, 1, report->after);
  sqlite3_bind_int64 (st, 2, report->upto);
  if (sqlite3_step (st) == SQLITE_ROW)
    report->events_checked = sqlite3_column_int64 (st, 0) + extra;
  sqlite3_finalize (st);
  report->events_seconds = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;

  start = g_get_monotonic_time ();
  if (!check_views (&v, all, error))
    goto out;
  report->views_seconds = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  od_sqlite_exec (v.db, "COMMIT", NULL, NULL);

  /* A run cancelled by now records nothing.  The console cancels before
   * it closes the cache; a cache closed after this check refuses the
   * job (OD_CACHE_ERROR_CLOSED), below. */
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    goto out;
  r = g_new0 (Repair, 1);
  r->after = report->after;
  r->upto = report->upto;
  r->events_checked = report->events_checked;
  if (repair && !od_verify_report_clean (report))
    {
      GHashTableIter iter;
      gpointer key;

      r->positions = g_array_ref (report->positions);
      r->events = g_ptr_array_ref (v.server_events);
      r->orders = g_ptr_array_new_with_free_func (g_free);
      g_hash_table_iter_init (&iter, v.touched);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        g_ptr_array_add (r->orders, g_strdup (key));
      for (guint i = 0; i < report->orders->len; i++)
        if (!g_hash_table_contains (v.touched, g_ptr_array_index (report->orders, i)))
          g_ptr_array_add (r->orders, g_strdup (g_ptr_array_index (report->orders, i)));
      report->repaired = TRUE;
    }
  r->result = g_strdup (od_verify_report_clean (report) ? "clean"
                        : report->repaired ? "repaired" : "differs");
  r->report_json = od_verify_report_to_json (report);
  ok = write_and_wait (cache, r, &write_error);
  if (!ok)
    {
      report->repaired = FALSE;
      /* Closed between the check above and the job: the run was
       * cancelled if it was (the console cancels, then closes), else it
       * failed with the cache's error. */
      if (g_error_matches (write_error, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED)
          && g_cancellable_set_error_if_cancelled (cancellable, error))
        g_clear_error (&write_error);
      else
        g_propagate_error (error, g_steal_pointer (&write_error));
    }
  repair_free (r);
  if (progress != NULL)
    progress (1.0, progress_data);

out:
  if (v.db != NULL)
    {
      od_sqlite_exec (v.db, "ROLLBACK", NULL, NULL);
      sqlite3_close (v.db);
    }
  g_clear_object (&v.session);
  g_free (v.url);
  g_free (v.token);
  g_ptr_array_unref (v.server_events);
  g_hash_table_unref (v.touched);
  return ok ? g_steal_pointer (&report) : NULL;
}

OdVerifyReport *
od_verify_run (OdCache          *cache,
               const char       *server_url,
               const char       *token,
               GTlsDatabase     *tls_database,
               gint64            after,
               gboolean          repair,
               OdVerifyProgress  progress,
               gpointer          progress_data,
               GCancellable     *cancellable,
               GError          **error)
{
  return verify_run (cache, server_url, token, tls_database, after, repair, progress, progress_data,
                     NULL, NULL, FALSE, cancellable, error);
}

gboolean
od_verify_get_last (OdCache  *cache,
                    gint64   *verified_at_usec,
                    gint64   *upto,
                    char    **result,
                    GError  **error)
{
  sqlite3_stmt *st = od_cache_prepare_read (cache, "SELECT verified_at, upto_position, result"
                                            " FROM verify_runs ORDER BY id DESC LIMIT 1", error);
  gboolean found;

  if (st == NULL)
    return FALSE;
  found = sqlite3_step (st) == SQLITE_ROW;
  if (found)
    {
      *verified_at_usec = sqlite3_column_int64 (st, 0);
      *upto = sqlite3_column_int64 (st, 1);
      if (result != NULL)
        *result = g_strdup ((const char *) sqlite3_column_text (st, 2));
    }
  sqlite3_reset (st);
  return found;
}

typedef struct
{
  OdCache      *cache;
  char         *url;
  char         *token;
  GTlsDatabase *trust;
  gint64   after;
  gboolean repair;
  gboolean paced;
  GMainContext    *context;  /* where steps are reported */
  OdVerifyStepFunc step;
  gpointer         step_data;
  GDestroyNotify   step_destroy;
} AsyncData;

typedef struct
{
  AsyncData    *d;
  GTask        *task;   /* keeps d alive until the step is delivered */
  OdVerifyStep  step;
  gint64        done, total;
} Step;

static gboolean
deliver_step (gpointer data)
{
  Step *s = data;

  if (!g_task_get_completed (s->task))
    s->d->step (s->step, s->done, s->total, s->d->step_data);
  return G_SOURCE_REMOVE;
}

static void
step_free (Step *s)
{
  g_object_unref (s->task);
  g_free (s);
}

/* On the worker thread: hands the step to the caller's context. */
static void
step_in_thread (OdVerifyStep step,
                gint64       done,
                gint64       total,
                gpointer     data)
{
  GTask *task = data;
  Step *s = g_new0 (Step, 1);

  s->d = g_task_get_task_data (task);
  s->task = g_object_ref (task);
  s->step = step;
  s->done = done;
  s->total = total;
  g_main_context_invoke_full (s->d->context, G_PRIORITY_DEFAULT, deliver_step, s,
                              (GDestroyNotify) step_free);
}

static void
async_data_free (AsyncData *d)
{
  g_object_unref (d->cache);
  g_free (d->url);
  g_free (d->token);
  g_clear_object (&d->trust);
  if (d->step_destroy != NULL)
    d->step_destroy (d->step_data);
  g_main_context_unref (d->context);
  g_free (d);
}

static void
run_in_thread (GTask        *task,
               gpointer      source,
               gpointer      task_data,
               GCancellable *cancellable)
{
  AsyncData *d = task_data;
  GError *error = NULL;
  OdVerifyReport *report = verify_run (d->cache, d->url, d->token, d->trust, d->after, d->repair,
                                       NULL, NULL, d->step ? step_in_thread : NULL, task, d->paced,
                                       cancellable, &error);

  if (report != NULL)
    g_task_return_pointer (task, report, (GDestroyNotify) od_verify_report_free);
  else
    g_task_return_error (task, error);
}

void
od_verify_run_async (OdCache            *cache,
                     const char         *server_url,
                     const char         *token,
                     GTlsDatabase       *tls_database,
                     gint64              after,
                     gboolean            repair,
                     GCancellable       *cancellable,
                     GAsyncReadyCallback callback,
                     gpointer            user_data)
{
  od_verify_run_full_async (cache, server_url, token, tls_database, after, repair, FALSE, NULL, NULL,
                            NULL, cancellable, callback, user_data);
}

void
od_verify_run_full_async (OdCache            *cache,
                          const char         *server_url,
                          const char         *token,
                          GTlsDatabase       *tls_database,
                          gint64              after,
                          gboolean            repair,
                          gboolean            paced,
                          OdVerifyStepFunc    step,
                          gpointer            step_data,
                          GDestroyNotify      step_destroy,
                          GCancellable       *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer            user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  AsyncData *d = g_new0 (AsyncData, 1);

  d->paced = paced;
  d->context = g_main_context_ref_thread_default ();
  d->step = step;
  d->step_data = step_data;
  d->step_destroy = step_destroy;

  d->cache = g_object_ref (cache);
  d->url = g_strdup (server_url);
  d->token = g_strdup (token);
  d->trust = tls_database ? g_object_ref (tls_database) : NULL;
  d->after = after;
  d->repair = repair;
  g_task_set_task_data (task, d, (GDestroyNotify) async_data_free);
  g_task_run_in_thread (task, run_in_thread);
}

OdVerifyReport *
od_verify_run_finish (GAsyncResult  *result,
                      GError       **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}
