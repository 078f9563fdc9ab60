/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-events.h"
#include "od-cache-private.h" /* od_cache_get_db () */

#include <string.h>

OdEvent *
od_test_event_new (gint64      position,
                   gint64      prev,
                   const char *order_id,
                   gint64      version,
                   const char *type,
                   const char *data_json)
{
  OdEvent *ev = od_event_new ();
  gint64 base = 1790000000000000; /* a fixed epoch keeps runs comparable */

  ev->position = position;
  ev->prev = prev;
  g_strlcpy (ev->order_id, order_id, sizeof ev->order_id);
  ev->version = version;
  ev->type = g_strdup (type);
  ev->recorded_at = od_timestamp_format (base + position * 1000);
  ev->actor = g_strdup ("test");
  ev->data = g_strdup (data_json);
  return ev;
}

void
od_test_log_free (OdTestLog *log)
{
  g_ptr_array_unref (log->events);
  g_free (log);
}

static const char *names[] = { "Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra",
                               "Barbara Liskov", "Donald Knuth", "Frances Allen", "Ken Thompson" };

OdTestLog *
od_test_log_new (guint   n_orders,
                 guint32 seed)
{
  OdTestLog *log = g_new0 (OdTestLog, 1);
  GRand *rand = g_rand_new_with_seed (seed);
  gint64 pos = 0;
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  g_autofree gint64 *versions = g_new0 (gint64, n_orders);
  g_autofree int *stage = g_new0 (int, n_orders);

  log->events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  for (guint i = 0; i < n_orders; i++)
    {
      char id[OD_UUID_LEN + 1];

      od_uuid_v7_fill (id, 1790000000000 + i);
      g_ptr_array_add (ids, g_strdup (id));
    }
  /* Interleave orders: each step advances one order of a sliding window
   * of open ones, so an order's events are close in time as in real
   * traffic.  Stages: 0 create, 1-2 add items, 3 place (or cancel, or a
   * type this build does not know), 4 ship, 5 deliver, 6 done. */
  {
    guint done = 0, next = 0;

    while (done < n_orders)
      {
        guint i;
        g_autofree char *data = NULL;
        const char *type = NULL;

        if (next < n_orders && (next - done < 8 || g_rand_int_range (rand, 0, 3) == 0))
          i = next++;
        else
          i = g_rand_int_range (rand, done, next);
        if (stage[i] >= 6)
          {
            while (done < next && stage[done] >= 6)
              done++;
            continue;
          }
        switch (stage[i])
          {
          case 0:
            type = "OrderCreated";
            data = g_strdup_printf ("{\"customer_name\":\"%s %u\",\"customer_email\":\"c%u@example.com\",\"currency\":\"EUR\"}",
                                    names[i % G_N_ELEMENTS (names)], i, i);
            stage[i] = 1;
            break;
          case 1:
          case 2:
            type = "ItemAdded";
            data = g_strdup_printf ("{\"sku\":\"SKU-%u\",\"name\":\"Item %u\",\"quantity\":%u,\"unit_price_cents\":%u}",
                                    g_rand_int_range (rand, 0, 3), i, g_rand_int_range (rand, 1, 5),
                                    g_rand_int_range (rand, 100, 5000));
            stage[i]++;
            break;
          case 3:
            {
              int r = g_rand_int_range (rand, 0, 10);

              if (r == 0)
                {
                  type = "OrderCancelled";
                  data = g_strdup ("{\"reason\":\"customer asked\"}");
                  stage[i] = 6;
                }
              else if (r == 1)
                {
                  type = "SomethingNew";
                  data = g_strdup ("{\"x\":[1,2]}");
                }
              else if (r == 2)
                {
                  type = "ItemRemoved";
                  data = g_strdup ("{\"sku\":\"SKU-1\"}");
                }
              else
                {
                  type = "OrderPlaced";
                  data = g_strdup ("{\"total_cents\":0,\"item_count\":0}");
                  stage[i] = 4;
                }
            }
            break;
          case 4:
            type = "OrderShipped";
            data = g_strdup ("{\"carrier\":\"DHL\",\"tracking_number\":\"T1\"}");
            stage[i] = 5;
            break;
          case 5:
          default:
            type = "OrderDelivered";
            data = g_strdup ("{}");
            stage[i] = 6;
            break;
          }
        versions[i]++;
        pos++;
        g_ptr_array_add (log->events,
                         od_test_event_new (pos, pos - 1, ids->pdata[i], versions[i], type, data));
      }
  }
  log->head = pos;
  g_rand_free (rand);
  return log;
}

GPtrArray *
od_test_log_slice (OdTestLog *log,
                   guint      from,
                   guint      to)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);

  for (guint i = from; i < to && i < log->events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (log->events, i);

      g_ptr_array_add (out, od_test_event_new (ev->position, ev->prev, ev->order_id, ev->version,
                                               ev->type, ev->data));
    }
  return out;
}

GHashTable *
od_test_fold (GPtrArray *events)
{
  GHashTable *fold = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify) od_order_free);

  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);
      OdOrder *o = g_hash_table_lookup (fold, ev->order_id);

      if (o == NULL)
        {
          o = od_order_new (ev->order_id);
          g_hash_table_insert (fold, g_strdup (ev->order_id), o);
        }
      od_order_apply (o, ev->type, od_event_get_data (ev), ev->version, ev->position,
                      ev->recorded_at);
    }
  return fold;
}

gboolean
od_test_cache_equals_fold (OdCache    *cache,
                           GHashTable *fold,
                           char      **why)
{
  sqlite3 *db = od_cache_get_db (cache);
  sqlite3_stmt *st = NULL;
  GHashTableIter iter;
  gpointer key, value;
  gint64 n_rows = 0, n_fold = 0, n_items = 0, n_fold_items = 0;

  g_hash_table_iter_init (&iter, fold);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      OdOrder *o = value;
      g_autoptr(GError) error = NULL;
      g_autoptr(OdOrder) c = NULL;

      if (o->status == OD_STATUS_NONE)
        continue;
      n_fold++;
      n_fold_items += o->lines->len;
      c = od_query_order (cache, o->order_id, &error);
      if (c == NULL)
        {
          *why = g_strdup_printf ("order %s missing from the cache", o->order_id);
          return FALSE;
        }
      if (c->status != o->status || c->version != o->version
          || g_strcmp0 (c->customer_name, o->customer_name) != 0
          || g_strcmp0 (c->customer_email, o->customer_email) != 0
          || g_strcmp0 (c->currency, o->currency) != 0
          || c->last_position != o->last_position
          || g_strcmp0 (c->updated_at, o->updated_at) != 0
          || g_strcmp0 (c->created_at, o->created_at) != 0
          || c->lines->len != o->lines->len
          || c->refunded_cents != o->refunded_cents || c->note_count != o->note_count)
        {
          *why = g_strdup_printf ("order %s differs: status %d/%d version %" G_GINT64_FORMAT
                                  "/%" G_GINT64_FORMAT " lines %u/%u refunded %" G_GINT64_FORMAT
                                  "/%" G_GINT64_FORMAT " notes %" G_GINT64_FORMAT
                                  "/%" G_GINT64_FORMAT,
                                  o->order_id, c->status, o->status, c->version, o->version,
                                  c->lines->len, o->lines->len, c->refunded_cents,
                                  o->refunded_cents, c->note_count, o->note_count);
          return FALSE;
        }
      for (guint i = 0; i < o->lines->len; i++)
        {
          OdLine *a = g_ptr_array_index (o->lines, i);
          OdLine *b = od_order_find_line (c, a->sku);

          if (b == NULL || b->quantity != a->quantity
              || b->unit_price_cents != a->unit_price_cents || g_strcmp0 (b->name, a->name) != 0)
            {
              *why = g_strdup_printf ("order %s line %s differs", o->order_id, a->sku);
              return FALSE;
            }
        }
      /* total_cents and item_count as the list shows them */
      {
        sqlite3_stmt *t = NULL;
        gboolean ok;

        sqlite3_prepare_v2 (db, "SELECT total_cents, item_count FROM orders WHERE order_id = ?",
                            -1, &t, NULL);
        sqlite3_bind_text (t, 1, o->order_id, -1, SQLITE_STATIC);
        ok = sqlite3_step (t) == SQLITE_ROW
             && sqlite3_column_int64 (t, 0) == od_order_total_cents (o)
             && sqlite3_column_int64 (t, 1) == od_order_item_count (o);
        sqlite3_finalize (t);
        if (!ok)
          {
            *why = g_strdup_printf ("order %s total or item count differs", o->order_id);
            return FALSE;
          }
      }
    }
  sqlite3_prepare_v2 (db, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items)",
                      -1, &st, NULL);
  if (sqlite3_step (st) == SQLITE_ROW)
    {
      n_rows = sqlite3_column_int64 (st, 0);
      n_items = sqlite3_column_int64 (st, 1);
    }
  sqlite3_finalize (st);
  if (n_rows != n_fold || n_items != n_fold_items)
    {
      *why = g_strdup_printf ("cache has %" G_GINT64_FORMAT " orders / %" G_GINT64_FORMAT
                              " lines, the fold %" G_GINT64_FORMAT " / %" G_GINT64_FORMAT,
                              n_rows, n_items, n_fold, n_fold_items);
      return FALSE;
    }
  return TRUE;
}
