/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-demo.h"

#include <math.h>
#include <string.h>

#define DEMO_ACTOR "demo"
#define TICK_MS    50

static const char *first_names[] = {
  "Anna", "Ben", "Chiara", "David", "Elif", "Felix", "Greta", "Hugo", "Ines", "Jonas",
  "Kemal", "Lena", "Mateo", "Nora", "Oskar", "Paula", "Quentin", "Rosa", "Samir", "Tanja",
  "Ugo", "Vera", "Wim", "Xenia", "Yusuf", "Zoë", "Åsa", "Jürgen", "Sinéad", "Łukasz",
};

static const char *last_names[] = {
  "Albers", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hoffmann", "Ivanova",
  "Jansen", "Kowalski", "Lindqvist", "Moreau", "Novak", "O'Brien", "Petrov", "Quint", "Rossi",
  "Schmidt", "Tanaka", "Umarov", "Vogel", "Weber", "Yılmaz", "Zimmermann",
};

typedef struct
{
  const char *sku;
  const char *name;
  gint64      price;
} Product;

static const Product products[] = {
  { "MUG-BLUE", "Blue mug", 1299 },
  { "MUG-RED", "Red mug", 1299 },
  { "TEE-M-BLK", "T-shirt, black, M", 1990 },
  { "TEE-L-WHT", "T-shirt, white, L", 1990 },
  { "BAG-CANVAS", "Canvas tote bag", 1450 },
  { "PEN-SET-3", "Fountain pen set (3)", 3499 },
  { "NOTE-A5", "Notebook A5, dotted", 899 },
  { "LAMP-DESK", "Desk lamp", 4999 },
  { "CABLE-USB-C", "USB-C cable 1 m", 799 },
  { "CHAIR-ERGO", "Ergonomic chair", 28900 },
  { "PLANT-POT", "Ceramic plant pot", 2250 },
  { "TEA-GREEN", "Green tea, 100 g", 650 },
  { "COFFEE-1KG", "Coffee beans, 1 kg", 2490 },
  { "SOCKS-3P", "Wool socks (3 pairs)", 1800 },
};

static const char *carriers[] = { "DHL", "UPS", "DPD", "GLS", "PostNL", "La Poste" };
static const char *currencies[] = { "EUR", "EUR", "EUR", "USD", "GBP", "CHF", "SEK" };
static const char *reasons[] = {
  "Customer asked to cancel", "Payment failed", "Out of stock", "Duplicate order",
  "Address could not be verified",
};

typedef struct
{
  char          order_id[OD_UUID_LEN + 1];
  OdOrderStatus status;
  guint         n_lines;
  gboolean      busy;
} DemoOrder;

struct _OdDemo
{
  OdServer  *server;
  GPtrArray *open;      /* DemoOrder not yet delivered or cancelled */
  GRand     *rand;
  double     rate;
  double     owed;
  gint64     last_tick;
  guint      tick_id;
  guint      in_flight;
};

char *
od_demo_tokens_json (void)
{
  g_autofree char *op = od_auth_hash_token (OD_DEMO_OPERATOR_TOKEN);
  g_autofree char *view = od_auth_hash_token (OD_DEMO_VIEWER_TOKEN);

  return g_strdup_printf ("[{\"name\":\"demo-operator\",\"role\":\"operator\",\"token_sha256\":\"%s\"},"
                          "{\"name\":\"demo-viewer\",\"role\":\"viewer\",\"token_sha256\":\"%s\"}]\n",
                          op, view);
}

OdDemo *
od_demo_new (OdServer *server)
{
  OdDemo *demo = g_new0 (OdDemo, 1);

  demo->server = g_object_ref (server);
  demo->open = g_ptr_array_new_with_free_func (g_free);
  demo->rand = g_rand_new ();
  return demo;
}

void
od_demo_free (OdDemo *demo)
{
  if (demo == NULL)
    return;
  g_clear_handle_id (&demo->tick_id, g_source_remove);
  g_ptr_array_unref (demo->open);
  g_rand_free (demo->rand);
  g_object_unref (demo->server);
  g_free (demo);
}

static const char *
pick (OdDemo      *demo,
      const char **list,
      guint        n)
{
  return list[g_rand_int_range (demo->rand, 0, n)];
}

#define PICK(demo, list) pick (demo, list, G_N_ELEMENTS (list))

static OdCommand *
make_create (OdDemo     *demo,
             const char *order_id)
{
  OdCommand *command = od_command_new (OD_COMMAND_CREATE_ORDER, order_id);
  const char *first = PICK (demo, first_names);
  const char *last = PICK (demo, last_names);
  g_autofree char *ascii = g_str_to_ascii (last, "C");
  g_autofree char *lower = g_ascii_strdown (ascii, -1);
  g_autofree char *first_ascii = g_str_to_ascii (first, "C");
  g_autofree char *first_lower = g_ascii_strdown (first_ascii, -1);

  g_strdelimit (lower, "' ", '-');
  command->customer_name = g_strdup_printf ("%s %s", first, last);
  command->customer_email = g_strdup_printf ("%s.%s@example.com", first_lower, lower);
  command->currency = g_strdup (PICK (demo, currencies));
  return command;
}

static OdCommand *
make_add (OdDemo     *demo,
          const char *order_id)
{
  OdCommand *command = od_command_new (OD_COMMAND_ADD_ITEM, order_id);
  const Product *product = &products[g_rand_int_range (demo->rand, 0, G_N_ELEMENTS (products))];

  command->sku = g_strdup (product->sku);
  command->name = g_strdup (product->name);
  command->quantity = g_rand_int_range (demo->rand, 1, 4);
  command->unit_price_cents = product->price;
  return command;
}

static OdCommand *
make_ship (OdDemo     *demo,
           const char *order_id)
{
  OdCommand *command = od_command_new (OD_COMMAND_SHIP_ORDER, order_id);

  command->carrier = g_strdup (PICK (demo, carriers));
  command->tracking_number = g_strdup_printf ("%08X%04u", g_rand_int (demo->rand),
                                              g_rand_int_range (demo->rand, 0, 10000));
  return command;
}

static OdCommand *
make_cancel (OdDemo     *demo,
             const char *order_id)
{
  OdCommand *command = od_command_new (OD_COMMAND_CANCEL_ORDER, order_id);

  command->reason = g_strdup (PICK (demo, reasons));
  return command;
}

static void
seed_done (OdJob    *job,
           gpointer  user_data)
{
  /* Seeding is planned to be valid: a refusal is a bug in the plan. */
  if (job->status != 200)
    g_warning ("demo seed: %s for %s refused: %s", od_command_type_name (job->command->type),
               job->command->order_id, job->response);
}

typedef struct
{
  gint64     at_usec;
  OdCommand *command;
} Planned;

static int
planned_compare (gconstpointer a,
                 gconstpointer b)
{
  const Planned *pa = *(Planned **) a;
  const Planned *pb = *(Planned **) b;

  return pa->at_usec < pb->at_usec ? -1 : pa->at_usec > pb->at_usec;
}

static void
plan (GPtrArray *planned,
      gint64     at_usec,
      OdCommand *command)
{
  Planned *p = g_new0 (Planned, 1);

  p->at_usec = at_usec;
  p->command = command;
  g_ptr_array_add (planned, p);
}

/* Histories spread over the last three weeks: most orders are delivered,
 * some are cancelled, the newest are still in flight.  A history stops at
 * the first step that would lie in the future, and that order stays open
 * for the demo traffic to carry on. */
void
od_demo_seed (OdDemo *demo,
              guint   n_orders)
{
  g_autoptr(GPtrArray) planned = g_ptr_array_new ();
  gint64 now = g_get_real_time ();
  gint64 span = 21 * G_TIME_SPAN_DAY;

  for (guint i = 0; i < n_orders; i++)
    {
      /* Later orders are denser, as a growing shop's are. */
      double f = sqrt (g_rand_double (demo->rand));
      gint64 t = now - span + (gint64) (f * (span - 10 * G_TIME_SPAN_MINUTE));
      guint n_lines = g_rand_int_range (demo->rand, 1, 5);
      double fate = g_rand_double (demo->rand);
      DemoOrder *order = g_new0 (DemoOrder, 1);
      gboolean open = TRUE;

      od_uuid_v7_fill (order->order_id, t / 1000);
      plan (planned, t, make_create (demo, order->order_id));
      order->status = OD_STATUS_DRAFT;
      for (guint j = 0; j < n_lines; j++)
        {
          t += (gint64) g_rand_int_range (demo->rand, 20, 600) * G_USEC_PER_SEC;
          if (t >= now)
            break;
          plan (planned, t, make_add (demo, order->order_id));
          order->n_lines++;
        }

      while (open)
        {
          OdOrderStatus next;
          OdCommand *command;
          gint64 at = t;

          if (order->status == OD_STATUS_DRAFT && order->n_lines > 0)
            {
              next = fate < 0.05 ? OD_STATUS_CANCELLED : OD_STATUS_PLACED;
              at += next == OD_STATUS_CANCELLED
                      ? G_TIME_SPAN_HOUR
                      : (gint64) g_rand_int_range (demo->rand, 60, 3600) * G_USEC_PER_SEC;
            }
          else if (order->status == OD_STATUS_PLACED)
            {
              next = fate < 0.09 ? OD_STATUS_CANCELLED : OD_STATUS_SHIPPED;
              at += next == OD_STATUS_CANCELLED
                      ? 3 * G_TIME_SPAN_HOUR
                      : g_rand_int_range (demo->rand, 2, 30) * G_TIME_SPAN_HOUR;
            }
          else if (order->status == OD_STATUS_SHIPPED)
            {
              next = OD_STATUS_DELIVERED;
              at += g_rand_int_range (demo->rand, 20, 96) * G_TIME_SPAN_HOUR;
            }
          else
            break;
          if (at >= now)
            break;

          switch (next)
            {
            case OD_STATUS_CANCELLED: command = make_cancel (demo, order->order_id); break;
            case OD_STATUS_PLACED: command = od_command_new (OD_COMMAND_PLACE_ORDER, order->order_id); break;
            case OD_STATUS_SHIPPED: command = make_ship (demo, order->order_id); break;
            case OD_STATUS_DELIVERED:
            case OD_STATUS_NONE:
            case OD_STATUS_DRAFT:
            case OD_STATUS_N:
            default:
              command = od_command_new (OD_COMMAND_MARK_DELIVERED, order->order_id);
              break;
            }
          plan (planned, at, command);
          t = at;
          order->status = next;
          open = next != OD_STATUS_DELIVERED && next != OD_STATUS_CANCELLED;
        }

      if (order->status == OD_STATUS_DELIVERED || order->status == OD_STATUS_CANCELLED)
        g_free (order);
      else
        g_ptr_array_add (demo->open, order);
    }

  g_ptr_array_sort (planned, planned_compare);
  for (guint i = 0; i < planned->len; i++)
    {
      Planned *p = g_ptr_array_index (planned, i);
      OdJob *job = od_job_new (p->command, DEMO_ACTOR, NULL, NULL, 0);

      job->recorded_at = od_timestamp_format (p->at_usec);
      od_server_submit (demo->server, job, seed_done, NULL);
      g_free (p);
    }
  g_message ("demo: seeding %u orders (%u commands)", n_orders, planned->len);
}

static void
traffic_done (OdJob    *job,
              gpointer  user_data)
{
  DemoOrder *order = user_data;

  order->busy = FALSE;
  if (job->status != 200)
    return;
  switch (job->command->type)
    {
    case OD_COMMAND_CREATE_ORDER: order->status = OD_STATUS_DRAFT; break;
    case OD_COMMAND_ADD_ITEM: order->n_lines++; break;
    case OD_COMMAND_PLACE_ORDER: order->status = OD_STATUS_PLACED; break;
    case OD_COMMAND_SHIP_ORDER: order->status = OD_STATUS_SHIPPED; break;
    case OD_COMMAND_MARK_DELIVERED: order->status = OD_STATUS_DELIVERED; break;
    case OD_COMMAND_CANCEL_ORDER: order->status = OD_STATUS_CANCELLED; break;
    case OD_COMMAND_REMOVE_ITEM:
    case OD_COMMAND_N_TYPES:
    default:
      break;
    }
}

static void
traffic_one (OdDemo *demo)
{
  DemoOrder *order = NULL;
  OdCommand *command;
  OdJob *job;

  /* Drop finished orders so the open set stays small. */
  for (guint i = 0; i < demo->open->len;)
    {
      DemoOrder *o = g_ptr_array_index (demo->open, i);

      if (!o->busy && (o->status == OD_STATUS_DELIVERED || o->status == OD_STATUS_CANCELLED))
        g_ptr_array_remove_index_fast (demo->open, i);
      else
        i++;
    }

  if (demo->open->len > 0 && g_rand_double (demo->rand) < 0.8)
    {
      order = g_ptr_array_index (demo->open, g_rand_int_range (demo->rand, 0, demo->open->len));
      if (order->busy)
        order = NULL;
    }

  if (order == NULL)
    {
      order = g_new0 (DemoOrder, 1);
      od_uuid_v7_fill (order->order_id, g_get_real_time () / 1000);
      order->status = OD_STATUS_NONE;
      g_ptr_array_add (demo->open, order);
      command = make_create (demo, order->order_id);
    }
  else
    {
      double r = g_rand_double (demo->rand);

      switch (order->status)
        {
        case OD_STATUS_DRAFT:
          if (order->n_lines == 0 || (order->n_lines < 4 && r < 0.6))
            command = make_add (demo, order->order_id);
          else if (r < 0.95)
            command = od_command_new (OD_COMMAND_PLACE_ORDER, order->order_id);
          else
            command = make_cancel (demo, order->order_id);
          break;
        case OD_STATUS_PLACED:
          command = r < 0.93 ? make_ship (demo, order->order_id) : make_cancel (demo, order->order_id);
          break;
        case OD_STATUS_SHIPPED:
          command = od_command_new (OD_COMMAND_MARK_DELIVERED, order->order_id);
          break;
        case OD_STATUS_NONE:
          command = make_create (demo, order->order_id);
          break;
        case OD_STATUS_DELIVERED:
        case OD_STATUS_CANCELLED:
        case OD_STATUS_N:
        default:
          return;
        }
    }

  order->busy = TRUE;
  job = od_job_new (command, DEMO_ACTOR, NULL, NULL, 0);
  od_server_submit (demo->server, job, traffic_done, order);
}

static gboolean
traffic_tick (gpointer data)
{
  OdDemo *demo = data;
  gint64 now = g_get_monotonic_time ();

  demo->owed += (now - demo->last_tick) * demo->rate / G_USEC_PER_SEC;
  demo->last_tick = now;
  demo->owed = MIN (demo->owed, demo->rate + 1);
  while (demo->owed >= 1.0)
    {
      demo->owed -= 1.0;
      traffic_one (demo);
    }
  return G_SOURCE_CONTINUE;
}

void
od_demo_start (OdDemo *demo,
               double  rate)
{
  demo->rate = rate;
  demo->last_tick = g_get_monotonic_time ();
  if (rate > 0)
    demo->tick_id = g_timeout_add (TICK_MS, traffic_tick, demo);
}
