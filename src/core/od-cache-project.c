/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The projector: applies events to the cache's views (orders,
 * order_items, the note index, inconsistent_orders) on the writer thread,
 * in the writer's transaction. */
#include "od-cache.h"
#include "od-cache-private.h"
#include "od-json.h"
#include "od-outbox-store.h"
#include "od-order.h"
#include "od-query-private.h"
#include "od-sqlite.h"

#include <malloc.h>
#include <string.h>

typedef struct
{
  OdOrder      *order;
  gboolean      inconsistent; /* in inconsistent_orders: apply nothing more */
  gboolean      in_db;
  gboolean      lines_dirty;
  OdOrderStatus orig_status;  /* as stored, when in_db */
  gint64        orig_total;
} Working;

void
od_cache_working_free (gpointer working)
{
  Working *w = working;

  od_order_free (w->order);
  g_free (w);
}

void
od_cache_finalize_writer_statements (OdCache *self)
{
  g_clear_pointer (&self->st_insert_event, sqlite3_finalize);
  g_clear_pointer (&self->st_load_order, sqlite3_finalize);
  g_clear_pointer (&self->st_load_lines, sqlite3_finalize);
  g_clear_pointer (&self->st_upsert_order, sqlite3_finalize);
  for (guint i = 0; i < G_N_ELEMENTS (self->st_update_order); i++)
    g_clear_pointer (&self->st_update_order[i], sqlite3_finalize);
  g_clear_pointer (&self->st_delete_lines, sqlite3_finalize);
  g_clear_pointer (&self->st_insert_line, sqlite3_finalize);
  g_clear_pointer (&self->st_sync_state, sqlite3_finalize);
  g_clear_pointer (&self->st_visible, sqlite3_finalize);
  g_clear_pointer (&self->st_contact, sqlite3_finalize);
  g_clear_pointer (&self->st_load_inconsistent, sqlite3_finalize);
  g_clear_pointer (&self->st_mark_inconsistent, sqlite3_finalize);
  g_clear_pointer (&self->st_prior_version, sqlite3_finalize);
  g_clear_pointer (&self->st_insert_note, sqlite3_finalize);
}

gboolean
od_cache_prepare_writer_statements (OdCache  *self,
                           GError  **error)
{
  sqlite3 *db = self->wdb;

  od_cache_finalize_writer_statements (self);
  return od_sqlite_prepare_persistent (db,
                  "INSERT INTO order_events (position, prev, order_id, version, type,"
                  " recorded_at, actor, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  &self->st_insert_event, error)
         && od_sqlite_prepare_persistent (db,
                     "SELECT " OD_QUERY_ORDER_COLUMNS " FROM orders WHERE order_id = ?",
                     &self->st_load_order, error)
         && od_sqlite_prepare_persistent (db,
                     "SELECT " OD_QUERY_LINE_COLUMNS " FROM order_items"
                     " WHERE order_id = ? ORDER BY line_no",
                     &self->st_load_lines, error)
         && od_sqlite_prepare_persistent (db,
                     "INSERT INTO orders (order_id, customer_name, customer_email, currency,"
                     " status, item_count, total_cents, version, created_at, updated_at,"
                     " last_position, carrier, tracking_number, cancel_reason, refunded_cents,"
                     " note_count)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                     " ?15, ?16)"
                     " ON CONFLICT (order_id) DO UPDATE SET"
                     " customer_name = ?2, customer_email = ?3, currency = ?4, status = ?5,"
                     " item_count = ?6, total_cents = ?7, version = ?8, created_at = ?9,"
                     " updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16",
                     &self->st_upsert_order, error)
         /* SQLite rewrites every index whose columns are SET, changed or
          * not, so each update names only what changed: the status and
          * total indexes are left alone when those did not move. */
         && od_sqlite_prepare_persistent (db,
                     "UPDATE orders SET item_count = ?6, version = ?8, updated_at = ?10,"
                     " last_position = ?11, carrier = ?12, tracking_number = ?13,"
                     " cancel_reason = ?14, refunded_cents = ?15, note_count = ?16"
                     " WHERE order_id = ?1",
                     &self->st_update_order[0], error)
         && od_sqlite_prepare_persistent (db,
                     "UPDATE orders SET status = ?5, item_count = ?6, version = ?8,"
                     " updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16 WHERE order_id = ?1",
                     &self->st_update_order[1], error)
         && od_sqlite_prepare_persistent (db,
                     "UPDATE orders SET item_count = ?6, total_cents = ?7, version = ?8,"
                     " updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16 WHERE order_id = ?1",
                     &self->st_update_order[2], error)
         && od_sqlite_prepare_persistent (db,
                     "UPDATE orders SET status = ?5, item_count = ?6, total_cents = ?7,"
                     " version = ?8, updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16 WHERE order_id = ?1",
                     &self->st_update_order[3], error)
         && od_sqlite_prepare_persistent (db,
                     "DELETE FROM order_items WHERE order_id = ?",
                     &self->st_delete_lines, error)
         && od_sqlite_prepare_persistent (db,
                     "INSERT INTO order_items (order_id, sku, name, quantity, unit_price_cents,"
                     " line_no) VALUES (?, ?, ?, ?, ?, ?)",
                     &self->st_insert_line, error)
         && od_sqlite_prepare_persistent (db,
                     "UPDATE sync_state SET applied_position = ?1,"
                     " known_head = max(known_head, ?2),"
                     " last_event_at = CASE WHEN ?3 > 0 THEN ?3 ELSE last_event_at END"
                     " WHERE id = 1",
                     &self->st_sync_state, error)
         && od_sqlite_prepare_persistent (db,
                     "UPDATE pending_commands SET state = " OD_OUTBOX_SQL_VISIBLE ", visible_at = ?2"
                     " WHERE state = " OD_OUTBOX_SQL_ACCEPTED " AND position <= ?1",
                     &self->st_visible, error)
         && od_sqlite_prepare_persistent (db,
                     "UPDATE sync_state SET known_head = max(known_head, ?1),"
                     " last_contact_at = max(last_contact_at, ?2),"
                     " server_url = coalesce(?3, server_url) WHERE id = 1",
                     &self->st_contact, error)
         && od_sqlite_prepare_persistent (db,
                     "SELECT 1 FROM inconsistent_orders WHERE order_id = ?",
                     &self->st_load_inconsistent, error)
         && od_sqlite_prepare_persistent (db,
                     "INSERT OR IGNORE INTO inconsistent_orders (order_id, version, position,"
                     " reason) VALUES (?, ?, ?, ?)",
                     &self->st_mark_inconsistent, error)
         && od_sqlite_prepare_persistent (db,
                     "SELECT coalesce(max(version), 0) FROM order_events"
                     " WHERE order_id = ?1 AND position < ?2",
                     &self->st_prior_version, error)
         && od_sqlite_prepare_persistent (db,
                     "INSERT OR REPLACE INTO note_search (rowid, text) VALUES (?, ?)",
                     &self->st_insert_note, error);
}

gint64
od_cache_read_applied (sqlite3 *db)
{
  return od_sqlite_query_int64 (db, "SELECT applied_position FROM sync_state WHERE id = 1", 0);
}

static OdOrder *
load_order (OdCache    *self,
            const char *order_id,
            gboolean   *found)
{
  sqlite3_stmt *st = self->st_load_order;
  OdOrder *order = od_order_new (order_id);

  *found = FALSE;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW)
    {
      *found = TRUE;
      od_query_order_from_row (order, st);
    }
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (!*found)
    return order;

  st = self->st_load_lines;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
  while (sqlite3_step (st) == SQLITE_ROW)
    g_ptr_array_add (order->lines, od_query_line_from_row (st));
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  return order;
}

static gboolean
write_order (OdCache  *self,
             Working  *w,
             GError  **error)
{
  OdOrder *o = w->order;
  sqlite3_stmt *st = self->st_upsert_order;
  gint64 total = od_order_total_cents (o);

  /* Events for an order that was never created (only unknown types so
   * far) are kept in order_events but make no row. */
  if (o->status == OD_STATUS_NONE)
    return TRUE;
  if (w->in_db && w->orig_status != OD_STATUS_NONE)
    st = self->st_update_order[(w->orig_status != o->status ? 1 : 0)
                               | (w->orig_total != total ? 2 : 0)];

  sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, o->customer_name ? o->customer_name : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 3, o->customer_email ? o->customer_email : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 4, o->currency ? o->currency : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 5, od_order_status_name (o->status), -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 6, od_order_item_count (o));
  sqlite3_bind_int64 (st, 7, total);
  sqlite3_bind_int64 (st, 8, o->version);
  sqlite3_bind_text (st, 9, o->created_at ? o->created_at : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 10, o->updated_at ? o->updated_at : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 11, o->last_position);
  od_sqlite_bind_text_or_null (st, 12, o->carrier);
  od_sqlite_bind_text_or_null (st, 13, o->tracking_number);
  od_sqlite_bind_text_or_null (st, 14, o->cancel_reason);
  sqlite3_bind_int64 (st, 15, o->refunded_cents);
  sqlite3_bind_int64 (st, 16, o->note_count);
  if (!od_sqlite_step_done (self->wdb, st, "write order", error))
    return FALSE;

  if (!w->lines_dirty)
    return TRUE;
  if (w->in_db)
    {
      sqlite3_bind_text (self->st_delete_lines, 1, o->order_id, -1, SQLITE_STATIC);
      if (!od_sqlite_step_done (self->wdb, self->st_delete_lines, "delete lines", error))
        return FALSE;
    }
  for (guint i = 0; i < o->lines->len; i++)
    {
      OdLine *line = g_ptr_array_index (o->lines, i);

      st = self->st_insert_line;
      sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 2, line->sku, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 3, line->name ? line->name : "", -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 4, line->quantity);
      sqlite3_bind_int64 (st, 5, line->unit_price_cents);
      sqlite3_bind_int (st, 6, i);
      if (!od_sqlite_step_done (self->wdb, st, "write line", error))
        return FALSE;
    }
  return TRUE;
}

static int
compare_working (gconstpointer a,
                 gconstpointer b)
{
  const Working *wa = *(Working * const *) a;
  const Working *wb = *(Working * const *) b;

  return strcmp (wa->order->order_id, wb->order->order_id);
}

gboolean
od_cache_begin_tx (OdCache  *self,
          GError  **error)
{
  if (self->in_tx)
    return TRUE;
  if (!od_sqlite_exec (self->wdb, "BEGIN IMMEDIATE", "cache", error))
    return FALSE;
  self->in_tx = TRUE;
  self->tx_events = 0;
  self->tx_started = g_get_monotonic_time ();
  self->tx_applied = od_cache_get_applied_position (self);
  self->tx_known_head = 0;
  self->tx_last_event_at = 0;
  return TRUE;
}

void
od_cache_rollback_tx (OdCache *self)
{
  od_sqlite_exec (self->wdb, "ROLLBACK", "cache", NULL);
  self->in_tx = FALSE;
  g_hash_table_remove_all (self->working);
}

/* Writes the folded orders, the new checkpoint and the outbox's visible
 * marks, and commits them together: a kill at any instant leaves either
 * all of it or none. */
gboolean
od_cache_commit_tx (OdCache  *self,
           GError  **error)
{
  g_autoptr(GPtrArray) dirty = NULL;
  GHashTableIter iter;
  gpointer value;
  gboolean outbox_changed = FALSE;
  gint64 applied;

  gint64 t0 = g_get_monotonic_time (), t1, t2;

  if (!self->in_tx)
    return TRUE;

  dirty = g_ptr_array_sized_new (g_hash_table_size (self->working));
  g_hash_table_iter_init (&iter, self->working);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (dirty, value);
  /* Time-ordered ids written in key order touch each B-tree page once. */
  g_ptr_array_sort (dirty, compare_working);
  for (guint i = 0; i < dirty->len; i++)
    if (!write_order (self, g_ptr_array_index (dirty, i), error))
      goto fail;

  sqlite3_bind_int64 (self->st_sync_state, 1, self->tx_applied);
  sqlite3_bind_int64 (self->st_sync_state, 2, self->tx_known_head);
  sqlite3_bind_int64 (self->st_sync_state, 3, self->tx_last_event_at);
  if (!od_sqlite_step_done (self->wdb, self->st_sync_state, "sync state", error))
    goto fail;

  sqlite3_bind_int64 (self->st_visible, 1, self->tx_applied);
  sqlite3_bind_int64 (self->st_visible, 2, g_get_real_time ());
  od_outbox_store_bind_states (self->st_visible);
  if (!od_sqlite_step_done (self->wdb, self->st_visible, "outbox visible", error))
    goto fail;
  outbox_changed = sqlite3_changes (self->wdb) > 0;

  t1 = g_get_monotonic_time ();
  if (!od_sqlite_exec (self->wdb, "COMMIT", "cache", error))
    goto fail;
  t2 = g_get_monotonic_time ();
  g_debug ("commit: %u events, %u orders, apply %.0f ms, orders %.0f ms, commit %.0f ms",
           self->tx_events, dirty->len, (t0 - self->tx_started) / 1000.0,
           (t1 - t0) / 1000.0, (t2 - t1) / 1000.0);
  self->in_tx = FALSE;
  g_hash_table_remove_all (self->working);
  applied = self->tx_applied;
  /* Caught up after a bulk catch-up: the indexes are built before
   * anyone is told, so "caught up" also means "fast to query". */
  if (self->bulk && applied >= self->tx_known_head)
    od_cache_bulk_end (self);
  /* After a big catch-up the page cache and the folded orders are no
   * longer needed: give the memory back (the console's budget is for
   * browsing, not for catching up). */
  if (applied >= self->tx_known_head && self->tx_events >= 10000)
    {
      /* The catch-up's WAL (up to 400 MB with the large autocheckpoint)
       * is folded back now, not by the operator's first command. */
      gint64 c0 = g_get_monotonic_time (), c1;

      sqlite3_wal_checkpoint_v2 (self->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
      c1 = g_get_monotonic_time ();
      if (!self->keep_memory)
        {
          sqlite3_db_release_memory (self->wdb);
          malloc_trim (0);
        }
      g_debug ("caught up: WAL checkpointed in %.0f ms, memory %s in %.0f ms",
               (c1 - c0) / 1000.0, self->keep_memory ? "kept" : "given back",
               (g_get_monotonic_time () - c1) / 1000.0);
    }
  od_cache_set_applied (self, applied);
  od_cache_post_notify (self, applied, outbox_changed, FALSE, NULL);
  return TRUE;

fail:
  od_cache_rollback_tx (self);
  return FALSE;
}

/* Why `ev` cannot follow `order` by the protocol's own rules (versions
 * 1, 2, 3, … without a gap; the command table's status rule for the
 * command that emits it), or NULL when it can.  Only the status: the
 * fold is tolerant of the finer rules (a line present, a line count).
 * Unknown types only need their version. */
/* Makes an OrderNoteAdded's text searchable. */
static gboolean
index_note (OdCache          *self,
            OdEvent          *ev,
            const OdFlatData *flat,
            GError          **error)
{
  const char *text;

  if (flat != NULL)
    text = od_flat_data_get_string (flat, "text");
  else
    {
      JsonObject *data = od_event_get_data (ev);
      JsonNode *node = data ? json_object_get_member (data, "text") : NULL;

      text = od_json_is_string (node) ? json_node_get_string (node) : NULL;
    }
  if (text == NULL)
    return TRUE;
  sqlite3_bind_int64 (self->st_insert_note, 1, ev->position);
  sqlite3_bind_text (self->st_insert_note, 2, text, -1, SQLITE_STATIC);
  return od_sqlite_step_done (self->wdb, self->st_insert_note, "index note", error);
}

static char *
contract_break (const OdOrder *order,
                const OdEvent *ev)
{
  if (ev->version != order->version + 1)
    return g_strdup_printf ("%s at version %" G_GINT64_FORMAT " after version %" G_GINT64_FORMAT,
                            ev->type, ev->version, order->version);
  OdEventType type = od_event_type_from_name (ev->type);

  if (type == OD_EVENT_UNKNOWN)
    return NULL;
  for (OdCommandType c = 0; c < OD_COMMAND_N_TYPES; c++)
    if (od_command_spec (c)->event == type)
      {
        if (!od_order_status_allows (order->status, c))
          return g_strdup_printf ("%s on an order that is %s", ev->type,
                                  order->status == OD_STATUS_NONE
                                    ? "not created"
                                    : od_order_status_name (order->status));
        break;
      }
  return NULL;
}

char *
od_cache_contract_break (const OdOrder *order,
                         const OdEvent *event)
{
  return contract_break (order, event);
}

static gboolean
mark_inconsistent (OdCache       *self,
                   Working       *w,
                   const OdEvent *ev,
                   const char    *why,
                   GError       **error)
{
  sqlite3_stmt *st = self->st_mark_inconsistent;

  g_message ("order %s breaks the protocol at position %" G_GINT64_FORMAT
             " (%s): shown as of version %" G_GINT64_FORMAT "; its later events are kept, not applied",
             ev->order_id, ev->position, why, w->order->version);
  sqlite3_bind_text (st, 1, ev->order_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, w->order->version);
  sqlite3_bind_int64 (st, 3, ev->position);
  sqlite3_bind_text (st, 4, why, -1, SQLITE_STATIC);
  if (!od_sqlite_step_done (self->wdb, st, "mark inconsistent", error))
    return FALSE;
  w->inconsistent = TRUE;
  return TRUE;
}

/* Applies one batch inside the open transaction.  Returns FALSE on a
 * database error; a gap stops the batch without error. */
gboolean
od_cache_apply_events (OdCache    *self,
              GPtrArray  *events,
              GError    **error)
{
  OdFlatData flat;

  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);
      sqlite3_stmt *st = self->st_insert_event;
      Working *w;

      if (ev->position <= self->tx_applied)
        continue; /* replayed or repeated: a no-op by contract */
      if (ev->prev != self->tx_applied)
        {
          od_cache_call_gap_func (self, self->tx_applied, ev->position, ev->prev);
          return TRUE;
        }

      sqlite3_bind_int64 (st, 1, ev->position);
      sqlite3_bind_int64 (st, 2, ev->prev);
      sqlite3_bind_text (st, 3, ev->order_id, -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 4, ev->version);
      sqlite3_bind_text (st, 5, ev->type, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 6, ev->recorded_at, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 7, ev->actor, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 8, ev->data ? ev->data : "{}", -1, SQLITE_STATIC);
      if (!od_sqlite_step_done (self->wdb, st, "insert event", error))
        return FALSE;

      w = g_hash_table_lookup (self->working, ev->order_id);
      if (w == NULL)
        {
          /* Loaded even for a version 1: a second "first" event of an
           * existing order must be seen as the break it is. */
          w = g_new0 (Working, 1);
          w->order = load_order (self, ev->order_id, &w->in_db);
          w->orig_status = w->order->status;
          w->orig_total = od_order_total_cents (w->order);
          if (!w->in_db && ev->version != 1)
            {
              /* No row: the order had only events of unknown types (or
               * none); its version is that of its stored events. */
              st = self->st_prior_version;
              sqlite3_bind_text (st, 1, ev->order_id, -1, SQLITE_STATIC);
              sqlite3_bind_int64 (st, 2, ev->position);
              if (sqlite3_step (st) == SQLITE_ROW)
                w->order->version = sqlite3_column_int64 (st, 0);
              sqlite3_reset (st);
              sqlite3_clear_bindings (st);
            }
          st = self->st_load_inconsistent;
          sqlite3_bind_text (st, 1, ev->order_id, -1, SQLITE_STATIC);
          w->inconsistent = sqlite3_step (st) == SQLITE_ROW;
          sqlite3_reset (st);
          sqlite3_clear_bindings (st);
          g_hash_table_insert (self->working, w->order->order_id, w);
        }
      /* A server that breaks the contract is not believed: the event is
       * kept (the log stays complete), the order is not changed by it or
       * by anything after it, and says so.  Never invented state. */
      if (!w->inconsistent)
        {
          g_autofree char *why = contract_break (w->order, ev);

          if (why != NULL && !mark_inconsistent (self, w, ev, why, error))
            return FALSE;
        }
      if (!w->inconsistent)
        {
          OdEventType type = od_event_type_from_name (ev->type);
          /* The stream's events come without a parsed data object: the
           * common flat shape is folded from its text, anything else
           * through json-glib, as before (equal folds: test-fold). */
          gboolean is_flat = ev->data_node == NULL && ev->data != NULL
                             && od_flat_data_parse (&flat, ev->data, strlen (ev->data));

          if (type == OD_EVENT_ITEM_ADDED || type == OD_EVENT_ITEM_REMOVED)
            w->lines_dirty = TRUE;
          if (type == OD_EVENT_ORDER_NOTE_ADDED
              && !index_note (self, ev, is_flat ? &flat : NULL, error))
            return FALSE;
          if (is_flat)
            od_order_apply_flat (w->order, ev->type, &flat, ev->version, ev->position,
                                 ev->recorded_at);
          else
            od_order_apply (w->order, ev->type, od_event_get_data (ev), ev->version,
                            ev->position, ev->recorded_at);
        }

      self->tx_applied = ev->position;
      self->tx_events++;
      if (i + 1 == events->len || ((i + 1) % 1024) == 0)
        {
          gint64 usec;

          if (od_timestamp_parse (ev->recorded_at, &usec))
            self->tx_last_event_at = usec;
        }
    }
  return TRUE;
}
