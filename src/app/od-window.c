/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <string.h>

#include "od-command-dialog.h"
#include "od-format.h"
#include "od-ledger-window.h"
#include "od-preferences.h"
#include "od-secret.h"
#include "od-tooltip.h"
#include "od-verify-banner.h"
#include "od-welcome.h"
#include "od-window-private.h"

/* The main window.  It owns the profile's session (cache, sync engine,
 * outbox) and wires the core's signals to the widgets; the widgets only
 * read the cache through the core's queries. */

#define REFRESH_INTERVAL_MS 100
#define PROGRESS_THRESHOLD  500
#define MAX_LATENCIES       256
/* The list and the detail ask for 350 px each, and a separator. */
#define FOLD_WIDTH          701

struct _OdWindow
{
  AdwApplicationWindow  parent_instance;

  AdwToastOverlay      *toast_overlay;
  GtkStack             *main_stack;
  OdWelcome            *welcome;
  AdwWindowTitle       *window_title;
  GtkLabel             *pending_label;
  OdLagIndicator       *lag_indicator;
  GtkRevealer          *progress_revealer;
  GtkLabel             *progress_label;
  GtkProgressBar       *progress_bar;
  GtkWidget            *header_bar;
  GtkWidget            *ledger_button;
  GtkWidget            *back_button;
  GtkWidget            *new_button;
  GtkWidget            *search_button;
  GtkWidget            *lag_header_box;
  GtkWidget            *lag_strip;
  /* AdwLeaflet from the template; on libadwaita 1.4+ it is replaced by an
   * AdwNavigationSplitView (see setup_split_view()) and is NULL. */
  GtkWidget            *leaflet;
  GtkWidget            *split_view;
  guint                 relayout_source;
  guint                 label_toasts_source;
  gboolean              disposed;
  OdOrderList          *order_list;
  OdOrderDetail        *order_detail;
  OdVerifyBanner       *verify_banner;
  OdVerifyRunner       *verifier;

  char                 *server_url;
  char                 *token;
  OdCache              *cache;
  OdSyncEngine         *sync;
  OdOutbox             *outbox;
  GCancellable         *cancellable;
  GHashTable           *descriptions; /* command id → what the operator did */
  GArray               *latencies;    /* double ms */
  OdLedgerWindow       *ledger;

  guint                 refresh_source;
  gint64                last_refresh;
  gboolean              refresh_wanted;

  /* An order created here, to select and show once it is cached. */
  char                 *created_id;

  /* Catch-up progress. */
  gint64                progress_start_position;
  gint64                progress_start_time;
  char                 *last_toast;
};

G_DEFINE_FINAL_TYPE (OdWindow, od_window, ADW_TYPE_APPLICATION_WINDOW)

static void update_pending (OdWindow *self);
static void update_order_actions (OdWindow *self);

/* A toast's widget (and its close button) exists once the toast shows,
 * after the one before it is dismissed. */
static gboolean
label_toasts (gpointer user_data)
{
  OdWindow *self = user_data;

  self->label_toasts_source = 0;
  for (GtkWidget *child = gtk_widget_get_first_child (GTK_WIDGET (self->toast_overlay)); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    if (child != GTK_WIDGET (self->main_stack))
      od_accessible_label_buttons (child, _("Dismiss"));
  return G_SOURCE_REMOVE;
}

static void
on_toast_dismissed (OdWindow *self)
{
  /* A toast may come while the window closes. */
  if (self->label_toasts_source == 0 && !self->disposed)
    self->label_toasts_source = g_idle_add (label_toasts, self);
}

static void
add_toast (OdWindow *self,
           AdwToast *toast)
{
  g_signal_connect_object (toast, "dismissed", G_CALLBACK (on_toast_dismissed), self, G_CONNECT_SWAPPED);
  adw_toast_overlay_add_toast (self->toast_overlay, toast);
  on_toast_dismissed (self);
}

void
od_window_toast (OdWindow   *self,
                 const char *message)
{
  AdwToast *toast = adw_toast_new (message);

  g_free (self->last_toast);
  self->last_toast = g_strdup (message);
  adw_toast_set_timeout (toast, 5);
  add_toast (self, toast);
}

static void
toast_with_action (OdWindow   *self,
                   const char *message,
                   const char *button,
                   const char *action)
{
  AdwToast *toast = adw_toast_new (message);

  g_free (self->last_toast);
  self->last_toast = g_strdup (message);
  adw_toast_set_button_label (toast, button);
  adw_toast_set_action_name (toast, action);
  adw_toast_set_timeout (toast, 8);
  adw_toast_set_priority (toast, ADW_TOAST_PRIORITY_HIGH);
  add_toast (self, toast);
}

/* Live refresh of the list: at most every REFRESH_INTERVAL_MS, and at
 * once when the list has been quiet for longer, so a single change shows
 * without delay while a catch-up does not redraw for every batch. */

/* The order the operator just created: shown in the detail pane and
 * selected in the list (when the list, as filtered, has it) as soon as
 * the cache has it, so its first item is one click away. */
static void
show_created (OdWindow *self)
{
  g_autoptr(OdOrder) order = NULL;

  if (self->created_id == NULL || self->cache == NULL)
    return;
  order = od_query_order (self->cache, self->created_id, NULL);
  if (order == NULL)
    return;
  if (!od_order_list_select_order (self->order_list, self->created_id))
    od_order_detail_show (self->order_detail, self->created_id);
  g_clear_pointer (&self->created_id, g_free);
}

static void
do_refresh (OdWindow *self)
{
  self->refresh_wanted = FALSE;
  self->last_refresh = g_get_monotonic_time ();
  od_order_list_refresh (self->order_list);
  od_order_detail_reload (self->order_detail);
  show_created (self);
  update_order_actions (self);
}

static gboolean
refresh_timeout (gpointer user_data)
{
  OdWindow *self = user_data;

  self->refresh_source = 0;
  if (self->refresh_wanted)
    do_refresh (self);
  return G_SOURCE_REMOVE;
}

static void
schedule_refresh (OdWindow *self)
{
  gint64 since = (g_get_monotonic_time () - self->last_refresh) / 1000;

  self->refresh_wanted = TRUE;
  if (self->refresh_source != 0)
    return;
  if (since >= REFRESH_INTERVAL_MS)
    do_refresh (self);
  else
    self->refresh_source = g_timeout_add (REFRESH_INTERVAL_MS - since, refresh_timeout, self);
}

static void
on_cache_applied (OdCache  *cache,
                  gint64    position,
                  OdWindow *self)
{
  schedule_refresh (self);
}

static void
on_cache_reset (OdCache  *cache,
                OdWindow *self)
{
  od_order_list_set_cache (self->order_list, self->cache);
  od_order_detail_reload (self->order_detail);
}

static void
on_verify_repaired (OdWindow *self)
{
  on_cache_reset (self->cache, self);
}

static void
on_outbox_changed (OdCache  *cache,
                   OdWindow *self)
{
  update_pending (self);
}

static void
update_pending (OdWindow *self)
{
  g_autoptr(GHashTable) pending = NULL;
  guint n = 0;

  if (self->outbox != NULL)
    {
      n = od_outbox_count_pending (self->outbox);
      pending = od_outbox_pending_orders (self->outbox);
    }
  od_order_list_set_pending (self->order_list, pending);
  od_order_detail_set_pending_orders (self->order_detail, pending);
  od_lag_indicator_set_pending (self->lag_indicator, n);
  if (n > 0)
    {
      g_autofree char *text = g_strdup_printf ("%u", n);

      g_autofree char *label = NULL;

      gtk_label_set_label (self->pending_label, text);
      /* TRANSLATORS: the Commands button, read by a screen reader */
      label = g_strdup_printf (ngettext ("Commands, %u pending", "Commands, %u pending", n), n);
      gtk_accessible_update_property (GTK_ACCESSIBLE (self->ledger_button), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                      label, -1);
    }
  else
    gtk_accessible_update_property (GTK_ACCESSIBLE (self->ledger_button), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                    _("Commands"), -1);
  gtk_widget_set_visible (GTK_WIDGET (self->pending_label), n > 0);
}

static int
compare_double (gconstpointer a,
                gconstpointer b)
{
  double x = *(const double *) a;
  double y = *(const double *) b;

  return x < y ? -1 : x > y ? 1 : 0;
}

static void
note_latency (OdWindow *self,
              double    ms)
{
  g_autoptr(GArray) sorted = NULL;
  double p50;
  double p99;

  if (ms < 0)
    return;
  if (self->latencies->len >= MAX_LATENCIES)
    g_array_remove_index (self->latencies, 0);
  g_array_append_val (self->latencies, ms);
  sorted = g_array_copy (self->latencies);
  g_array_sort (sorted, compare_double);
  /* Nearest rank, rounded up: the p99 of fewer than 100 samples is the
   * largest, never below the latest one. */
  p50 = g_array_index (sorted, double, (sorted->len + 1) / 2 - 1);
  p99 = g_array_index (sorted, double, (sorted->len * 99 + 99) / 100 - 1);
  od_lag_indicator_set_latency (self->lag_indicator, ms, p50, p99);
}

static void
on_command_changed (OdOutbox       *outbox,
                    gint64          id,
                    OdCommandState  state,
                    OdWindow       *self)
{
  g_autoptr(OdPendingCommand) command = NULL;
  g_autoptr(GError) error = NULL;
  const char *what = g_hash_table_lookup (self->descriptions, &id);
  g_autofree char *message = NULL;

  update_pending (self);
  if (state != OD_COMMAND_STATE_VISIBLE && state != OD_COMMAND_STATE_REJECTED)
    return;

  command = od_outbox_get (outbox, id, &error);
  if (command == NULL)
    return;
  if (what == NULL)
    what = command->type;

  if (state == OD_COMMAND_STATE_VISIBLE)
    {
      double ms = od_pending_command_latency_ms (command);

      note_latency (self, ms);
      /* The row updates in place; make sure it does so now. */
      do_refresh (self);
      /* The latency is in the command ledger and the lag details; the
       * operator only needs to know it is done. */
      /* TRANSLATORS: "Ship order: done" */
      message = g_strdup_printf (_("%s: done"), what);
      od_window_toast (self, message);
    }
  else
    {
      /* TRANSLATORS: "Ship order refused: Order … is delivered" */
      message = g_strdup_printf (_("%s refused: %s"), what,
                                 command->detail ? command->detail : _("no reason given"));
      toast_with_action (self, message, _("Details"), "win.ledger");
    }
}

static void
on_sign_in_needed (OdOutbox *outbox,
                   OdWindow *self)
{
  toast_with_action (self, _("The server refused the token: sign in again"),
                     _("Sign In"), "app.preferences");
}

static void
on_lag_notify (OdLag      *lag,
               GParamSpec *pspec,
               OdWindow   *self)
{
  OdLagState state = od_lag_get_state (lag);
  gint64 behind = od_lag_get_events_behind (lag);
  gint64 applied = od_lag_get_applied_position (lag);
  gint64 head = od_lag_get_known_head (lag);

  if (g_strcmp0 (pspec->name, "state") == 0 && state == OD_LAG_STATE_SIGN_IN_NEEDED)
    toast_with_action (self, _("The server refused the token: sign in again"),
                       _("Sign In"), "app.preferences");
  if (g_strcmp0 (pspec->name, "tls-errors") == 0 && od_lag_get_tls_errors (lag) != 0)
    /* The reasons are in the indicator's details; a toast is one line. */
    toast_with_action (self, _("The server’s certificate was refused: see the connection details"),
                       _("Preferences"), "app.preferences");

  if (state == OD_LAG_STATE_CATCHING_UP && behind >= PROGRESS_THRESHOLD)
    {
      gint64 now = g_get_monotonic_time ();
      gint64 done;
      gint64 total;
      g_autofree char *text = NULL;
      g_autofree char *eta = NULL;

      if (!gtk_revealer_get_reveal_child (self->progress_revealer))
        {
          self->progress_start_position = applied;
          self->progress_start_time = now;
          gtk_revealer_set_reveal_child (self->progress_revealer, TRUE);
        }
      done = applied - self->progress_start_position;
      total = head - self->progress_start_position;
      if (done > 0 && now > self->progress_start_time)
        {
          double rate = done / ((now - self->progress_start_time) / (double) G_USEC_PER_SEC);
          int seconds = (int) ((head - applied) / MAX (rate, 1.0));

          /* TRANSLATORS: estimated time left, in seconds */
          eta = g_strdup_printf (ngettext ("about %d second left", "about %d seconds left", seconds),
                                 seconds);
        }
      /* TRANSLATORS: catch-up progress: "Catching up: 12,000 of 1,000,000 events" */
      text = g_strdup_printf (_("Catching up: %'lld of %'lld events%s%s"),
                              (long long) MAX (done, 0), (long long) MAX (total, 0), eta ? " · " : "", eta ? eta : "");
      gtk_label_set_label (self->progress_label, text);
      gtk_progress_bar_set_fraction (self->progress_bar,
                                     total > 0 ? CLAMP ((double) done / total, 0, 1) : 0);
    }
  else if (state != OD_LAG_STATE_CATCHING_UP)
    gtk_revealer_set_reveal_child (self->progress_revealer, FALSE);
}

static void
close_session (OdWindow *self)
{
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_handle_id (&self->refresh_source, g_source_remove);

  od_lag_indicator_set_lag (self->lag_indicator, NULL);
  if (self->verifier != NULL)
    od_verify_runner_set_session (self->verifier, NULL, NULL, NULL);
  od_order_list_set_cache (self->order_list, NULL);
  od_order_detail_set_cache (self->order_detail, NULL);
  if (self->ledger != NULL)
    gtk_window_destroy (GTK_WINDOW (self->ledger));

  if (self->sync != NULL)
    {
      g_signal_handlers_disconnect_by_data (od_sync_engine_get_lag (self->sync), self);
      od_sync_engine_stop (self->sync);
    }
  if (self->outbox != NULL)
    g_signal_handlers_disconnect_by_data (self->outbox, self);
  if (self->cache != NULL)
    g_signal_handlers_disconnect_by_data (self->cache, self);
  g_clear_object (&self->sync);
  g_clear_object (&self->outbox);
  if (self->cache != NULL)
    od_cache_close (self->cache);
  g_clear_object (&self->cache);
  g_clear_pointer (&self->server_url, g_free);
  g_clear_pointer (&self->token, g_free);
  g_clear_pointer (&self->created_id, g_free);
}

/* Trusts the CA file chosen in Preferences, on top of nothing else: the
 * server's certificate must chain to it (or, without one, to the
 * system's store).  A file that cannot be read is said, and the system's
 * trust is kept: that refuses more, never less. */
static void
apply_tls_trust (OdWindow *self)
{
  GSettings *settings = od_application_get_settings ();
  g_autofree char *path = settings ? g_settings_get_string (settings, "ca-file") : NULL;
  g_autoptr(GTlsDatabase) database = NULL;

  if (self->sync == NULL)
    return;
  if (path != NULL && *path != '\0')
    {
      g_autoptr(GError) error = NULL;

      database = g_tls_file_database_new (path, &error);
      if (database == NULL)
        {
          /* TRANSLATORS: %s says why the file could not be read */
          g_autofree char *message = g_strdup_printf (_("The trusted certificate file cannot be used: %s"),
                                                      error->message);

          toast_with_action (self, message, _("Preferences"), "app.preferences");
        }
    }
  od_sync_engine_set_tls_database (self->sync, database);
  od_outbox_set_tls_database (self->outbox, database);
  od_verify_runner_set_tls_database (self->verifier, database);
}

static void
on_ca_file_changed (GSettings  *settings,
                    const char *key,
                    OdWindow   *self)
{
  apply_tls_trust (self);
}

static void
start_connection (OdWindow   *self,
                  const char *token)
{
  if (token != self->token)
    {
      g_free (self->token);
      self->token = g_strdup (token);
    }
  od_sync_engine_set_server (self->sync, self->server_url, self->token);
  od_verify_runner_set_token (self->verifier, self->token);
  od_outbox_set_server (self->outbox, self->server_url, self->token);
  od_sync_engine_start (self->sync);
  od_outbox_kick (self->outbox);
}

static void
on_token_looked_up (GObject      *source,
                    GAsyncResult *result,
                    gpointer      user_data)
{
  OdWindow *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *token = od_secret_lookup_finish (result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  if (token == NULL)
    {
      if (error != NULL)
        g_message ("Could not read the token from the keyring: %s", error->message);
      toast_with_action (self, _("No token for this server: sign in to connect"),
                         _("Sign In"), "app.preferences");
      return;
    }
  start_connection (self, token);
}

gboolean
od_window_open_profile (OdWindow    *self,
                        const char  *server_url,
                        const char  *token,
                        const char  *cache_path,
                        gboolean     offline,
                        GError     **error)
{
  g_autofree char *path = NULL;
  g_autoptr(OdCache) cache = NULL;
  GSettings *settings = od_application_get_settings ();

  g_return_val_if_fail (OD_IS_WINDOW (self), FALSE);
  g_return_val_if_fail (server_url != NULL, FALSE);

  path = cache_path ? g_strdup (cache_path) : od_cache_default_path (server_url);
  cache = od_cache_open (path, error);
  if (cache == NULL)
    return FALSE;

  close_session (self);
  /* The console's memory budget is 150 MB at a million orders.  Pages of
   * a memory-mapped database count in the process's resident size as soon
   * as a deep scroll touches them, and the read connection's page cache
   * grows to its limit; keep both small for the window.  The indexes make
   * every screen query a short walk, so a small cache costs little. */
  sqlite3_exec (od_cache_get_db (cache), "PRAGMA mmap_size=0; PRAGMA cache_size=-8192;",
                NULL, NULL, NULL);
  /* Commit catch-up in smaller transactions than a tool would, so the
   * list and the progress move while a long catch-up runs. */
  od_cache_set_max_transaction (cache, 20000);
  self->cancellable = g_cancellable_new ();
  self->server_url = g_strdup (server_url);
  self->cache = g_steal_pointer (&cache);
  self->sync = od_sync_engine_new (self->cache, server_url, token);
  self->outbox = od_outbox_new (self->cache, server_url, token);
  od_verify_runner_set_session (self->verifier, self->cache, od_sync_engine_get_lag (self->sync),
                                server_url);
  od_verify_runner_set_token (self->verifier, token);
  apply_tls_trust (self);

  g_signal_connect (self->cache, "applied", G_CALLBACK (on_cache_applied), self);
  g_signal_connect (self->cache, "reset", G_CALLBACK (on_cache_reset), self);
  g_signal_connect (self->cache, "outbox-changed", G_CALLBACK (on_outbox_changed), self);
  g_signal_connect (self->outbox, "command-changed", G_CALLBACK (on_command_changed), self);
  g_signal_connect (self->outbox, "sign-in-needed", G_CALLBACK (on_sign_in_needed), self);
  g_signal_connect (od_sync_engine_get_lag (self->sync), "notify",
                    G_CALLBACK (on_lag_notify), self);

  /* The cache shows at once, whatever the network does. */
  od_order_list_set_cache (self->order_list, self->cache);
  od_order_detail_set_cache (self->order_detail, self->cache);
  od_lag_indicator_set_lag (self->lag_indicator, od_sync_engine_get_lag (self->sync));
  {
    OdSyncState state = { 0 };

    if (od_cache_get_sync_state (self->cache, &state, NULL))
      od_lag_indicator_set_as_of (self->lag_indicator, state.last_contact_at);
    od_sync_state_clear (&state);
  }
  adw_window_title_set_subtitle (self->window_title, server_url);
  update_pending (self);
  gtk_stack_set_visible_child_name (self->main_stack, "orders");

  if (settings != NULL)
    {
      g_auto(GStrv) profiles = g_settings_get_strv (settings, "profiles");

      g_settings_set_string (settings, "last-profile", server_url);
      if (!g_strv_contains ((const char * const *) profiles, server_url))
        {
          g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
          g_auto(GStrv) updated = NULL;

          g_strv_builder_addv (builder, (const char **) profiles);
          g_strv_builder_add (builder, server_url);
          updated = g_strv_builder_end (builder);
          g_settings_set_strv (settings, "profiles", (const char * const *) updated);
        }
    }

  if (offline)
    return TRUE;
  if (token != NULL)
    start_connection (self, token);
  else
    od_secret_lookup_async (server_url, self->cancellable, on_token_looked_up, self);
  return TRUE;
}

/* Commands. */

typedef struct
{
  OdWindow  *self;
  OdCommand *command;
  char      *description;
} SubmitData;

static void
submit_data_free (SubmitData *data)
{
  g_object_unref (data->self);
  od_command_free (data->command);
  g_free (data->description);
  g_free (data);
}

static void
on_submitted (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  SubmitData *data = user_data;
  OdWindow *self = data->self;
  g_autoptr(GError) error = NULL;
  gint64 id = od_outbox_submit_finish (OD_OUTBOX (source), result, &error);

  if (id < 0)
    {
      g_autofree char *message = g_strdup_printf (_("%s was not queued: %s"),
                                                  data->description, error->message);
      od_window_toast (self, message);
    }
  else
    {
      gint64 *key = g_new (gint64, 1);

      *key = id;
      g_hash_table_insert (self->descriptions, key, g_strdup (data->description));
      update_pending (self);
    }
  submit_data_free (data);
}

void
od_window_submit (OdWindow        *self,
                  const OdCommand *command,
                  const char      *description)
{
  SubmitData *data;

  g_return_if_fail (OD_IS_WINDOW (self));

  if (self->outbox == NULL)
    {
      od_window_toast (self, _("Connect to a server first"));
      return;
    }
  data = g_new0 (SubmitData, 1);
  data->self = g_object_ref (self);
  data->command = od_command_copy (command);
  data->description = g_strdup (description);
  od_outbox_submit_async (self->outbox, data->command, NULL, on_submitted, data);
}

static void
on_dialog_submit (OdCommandDialog *dialog,
                  gpointer         command,
                  OdWindow        *self)
{
  const OdCommand *sent = command;

  if (sent->type == OD_COMMAND_CREATE_ORDER)
    {
      g_free (self->created_id);
      self->created_id = g_strdup (sent->order_id);
    }
  od_window_submit (self, command, od_command_dialog_get_description (dialog));
}

static OdCommandDialog *
open_command_dialog (OdWindow        *self,
                     OdCommandType    type,
                     const OdCommand *prefill)
{
  g_autoptr(OdOrder) edited = NULL;
  const OdOrder *order = od_order_detail_get_order (self->order_detail);
  OdCommandDialog *dialog;

  /* Editing a command: decide it against the order it was for, as the
   * cache has it now. */
  if (prefill != NULL && self->cache != NULL && type != OD_COMMAND_CREATE_ORDER)
    {
      edited = od_query_order (self->cache, prefill->order_id, NULL);
      order = edited;
    }
  if (type != OD_COMMAND_CREATE_ORDER && prefill == NULL && order == NULL)
    return NULL;
  dialog = od_command_dialog_new (GTK_WINDOW (self), type,
                                  type == OD_COMMAND_CREATE_ORDER ? NULL : order, prefill);
  g_signal_connect_object (dialog, "submit", G_CALLBACK (on_dialog_submit), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
  return dialog;
}

OdCommandDialog *
od_window_open_command_dialog (OdWindow      *self,
                               OdCommandType  type)
{
  g_return_val_if_fail (OD_IS_WINDOW (self), NULL);
  return open_command_dialog (self, type, NULL);
}

static void
on_detail_command (OdWindow *self,
                   int       type)
{
  open_command_dialog (self, type, NULL);
}

static void
on_detail_remove_item (OdWindow   *self,
                       const char *sku)
{
  const OdOrder *order = od_order_detail_get_order (self->order_detail);
  g_autoptr(OdCommand) command = NULL;
  g_autofree char *description = NULL;

  if (order == NULL)
    return;
  command = od_command_new (OD_COMMAND_REMOVE_ITEM, order->order_id);
  command->has_expected_version = TRUE;
  command->expected_version = order->version;
  command->sku = g_strdup (sku);
  /* TRANSLATORS: a command description, "Remove MUG-BLUE" */
  description = g_strdup_printf (_("Remove %s"), sku);
  od_window_submit (self, command, description);
}

/* Adaptive layout.  Wide: list and detail side by side, the lag
 * indicator in the header bar.  Narrow (the leaflet or split view folded,
 * under 701 px): one pane at a time with a back button, and the lag
 * indicator on a line of its own under the header bar so its state and
 * time always fit. */

static gboolean
is_narrow (OdWindow *self)
{
#if ADW_CHECK_VERSION (1, 4, 0)
  if (self->split_view == NULL)
    return FALSE;
  return adw_navigation_split_view_get_collapsed (ADW_NAVIGATION_SPLIT_VIEW (self->split_view));
#else
  if (self->leaflet == NULL)
    return FALSE;
  return adw_leaflet_get_folded (ADW_LEAFLET (self->leaflet));
#endif
}

static gboolean
is_showing_detail (OdWindow *self)
{
#if ADW_CHECK_VERSION (1, 4, 0)
  return self->split_view != NULL
         && adw_navigation_split_view_get_show_content (ADW_NAVIGATION_SPLIT_VIEW (self->split_view));
#else
  return self->leaflet != NULL
         && adw_leaflet_get_visible_child (ADW_LEAFLET (self->leaflet)) == GTK_WIDGET (self->order_detail);
#endif
}

static void
show_detail (OdWindow *self,
             gboolean  detail)
{
  if (!is_narrow (self))
    return;
#if ADW_CHECK_VERSION (1, 4, 0)
  adw_navigation_split_view_set_show_content (ADW_NAVIGATION_SPLIT_VIEW (self->split_view), detail);
#else
  adw_leaflet_set_visible_child (ADW_LEAFLET (self->leaflet),
                                 detail ? GTK_WIDGET (self->order_detail) : GTK_WIDGET (self->order_list));
#endif
}

/* What changes with the width changes the header's minimum width, and
 * the fold is reported during size allocation: a widget changed then would
 * be drawn before it is allocated again.  So it all happens right after. */
static void
apply_layout (OdWindow *self,
              gboolean  narrow)
{
  GtkWidget *lag = GTK_WIDGET (self->lag_indicator);
  gboolean detail = narrow && is_showing_detail (self);
  GtkWidget *target = narrow ? self->lag_strip : self->lag_header_box;

  gtk_widget_set_visible (self->back_button, detail);
  /* Searching is about the list: not offered over the detail. */
  gtk_widget_set_visible (self->search_button, !detail);
  /* The window title and the server's URL (also in the lag details) give
   * their room to the buttons. */
  gtk_widget_set_visible (GTK_WIDGET (self->window_title), !narrow);
  if (gtk_widget_get_parent (lag) != target)
    {
      g_object_ref (lag);
      gtk_box_remove (GTK_BOX (gtk_widget_get_parent (lag)), lag);
      gtk_box_append (GTK_BOX (target), lag);
      g_object_unref (lag);
    }
  gtk_widget_set_visible (self->lag_strip, narrow);
}

static gboolean
relayout (gpointer user_data)
{
  OdWindow *self = user_data;

  self->relayout_source = 0;
  apply_layout (self, is_narrow (self));
  return G_SOURCE_REMOVE;
}

/* A window opened narrow starts with the narrow layout: its first size
 * is computed from its widgets' minimum before anything folds, and the
 * wide header would not fit. */
static void
on_default_width (OdWindow *self)
{
  int width = 0;
  int height = 0;

  if (gtk_widget_get_mapped (GTK_WIDGET (self)))
    return;
  gtk_window_get_default_size (GTK_WINDOW (self), &width, &height);
  if (width > 0)
    apply_layout (self, width < FOLD_WIDTH);
}

static void
on_fold_changed (OdWindow *self)
{
  if (self->relayout_source == 0 && !self->disposed)
    self->relayout_source = g_idle_add_full (G_PRIORITY_HIGH_IDLE, relayout, self, NULL);
}

#if ADW_CHECK_VERSION (1, 4, 0)
/* libadwaita 1.4 deprecates AdwLeaflet: put the list and the detail in a
 * navigation split view that a breakpoint collapses under 701 px. */
static void
setup_split_view (OdWindow *self)
{
  GtkWidget *box = gtk_widget_get_parent (self->leaflet);
  g_autoptr(GtkWidget) list = g_object_ref (GTK_WIDGET (self->order_list));
  g_autoptr(GtkWidget) detail = g_object_ref (GTK_WIDGET (self->order_detail));
  AdwNavigationSplitView *split = ADW_NAVIGATION_SPLIT_VIEW (adw_navigation_split_view_new ());
  AdwBreakpoint *breakpoint;

  g_signal_handlers_disconnect_by_data (self->leaflet, self);
  /* The template keeps the leaflet alive: take the panes out of it. */
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  adw_leaflet_remove (ADW_LEAFLET (self->leaflet), list);
  adw_leaflet_remove (ADW_LEAFLET (self->leaflet), detail);
  G_GNUC_END_IGNORE_DEPRECATIONS
  gtk_box_remove (GTK_BOX (box), self->leaflet);
  self->leaflet = NULL;
  adw_navigation_split_view_set_sidebar (split, adw_navigation_page_new (list, _("Orders")));
  adw_navigation_split_view_set_content (split, adw_navigation_page_new (detail, _("Order")));
  adw_navigation_split_view_set_min_sidebar_width (split, 350);
  adw_navigation_split_view_set_max_sidebar_width (split, 900);
  adw_navigation_split_view_set_sidebar_width_fraction (split, 0.58);
  gtk_widget_set_vexpand (GTK_WIDGET (split), TRUE);
  gtk_box_append (GTK_BOX (box), GTK_WIDGET (split));
  self->split_view = GTK_WIDGET (split);
  g_signal_connect_swapped (split, "notify::collapsed", G_CALLBACK (on_fold_changed), self);
  g_signal_connect_swapped (split, "notify::show-content", G_CALLBACK (on_fold_changed), self);

  breakpoint = adw_breakpoint_new (adw_breakpoint_condition_parse ("max-width: 700sp"));
  adw_breakpoint_add_setters (breakpoint, G_OBJECT (split), "collapsed", TRUE, NULL);
  adw_application_window_add_breakpoint (ADW_APPLICATION_WINDOW (self), breakpoint);
  /* A window with breakpoints needs its own minimum size. */
  gtk_widget_set_size_request (GTK_WIDGET (self), 360, 600);
}
#endif

static void
back_action (GtkWidget  *widget,
             const char *action_name,
             GVariant   *parameter)
{
  show_detail (OD_WINDOW (widget), FALSE);
}

static void
on_selection_changed (OdWindow   *self,
                      const char *order_id)
{
  od_order_detail_show (self->order_detail, order_id);
  if (order_id != NULL && is_narrow (self))
    show_detail (self, TRUE);
  update_order_actions (self);
}

/* Enter or a double click on the row already selected opens it again. */
static void
on_row_activated (OdWindow *self,
                  guint     position)
{
  if (is_narrow (self) && od_order_list_get_selected_order_id (self->order_list) != NULL)
    show_detail (self, TRUE);
}

static void
on_ledger_edit (OdLedgerWindow *ledger,
                gpointer        command,
                OdWindow       *self)
{
  open_command_dialog (self, ((OdCommand *) command)->type, command);
}

static void
on_token_stored (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  g_autoptr(OdWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  /* The session goes on with the token in memory; the operator learns it
   * will have to be entered again next time. */
  if (!od_secret_store_finish (result, &error))
    {
      g_autofree char *message = g_strdup_printf (_("The token could not be kept in the keyring: %s"),
                                                  error->message);

      od_window_toast (self, message);
    }
}

static void
on_welcome_connect (OdWindow   *self,
                    const char *url,
                    const char *token)
{
  g_autoptr(GError) error = NULL;

  od_secret_store_async (url, token, NULL, on_token_stored, g_object_ref (self));
  if (!od_window_open_profile (self, url, token, NULL, FALSE, &error))
    {
      g_autofree char *message = g_strdup_printf (_("Could not open the cache: %s"), error->message);

      od_window_toast (self, message);
    }
}

static void
on_preferences_apply (OdPreferences *preferences,
                      const char    *url,
                      const char    *token,
                      OdWindow      *self)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *keep_token = NULL;

  if (token != NULL && *token != '\0')
    od_secret_store_async (url, token, NULL, on_token_stored, g_object_ref (self));

  if (g_strcmp0 (url, self->server_url) == 0 && self->sync != NULL)
    {
      if (token != NULL && *token != '\0')
        start_connection (self, token);
      else
        od_sync_engine_reconnect_now (self->sync);
      return;
    }
  if (token != NULL && *token != '\0')
    keep_token = g_strdup (token);
  if (!od_window_open_profile (self, url, keep_token, NULL, FALSE, &error))
    {
      g_autofree char *message = g_strdup_printf (_("Could not open the cache: %s"), error->message);

      od_window_toast (self, message);
    }
}

void
od_window_show_preferences (OdWindow *self)
{
  OdPreferences *preferences = od_preferences_new (GTK_WINDOW (self), self->server_url);

  g_signal_connect_object (preferences, "apply", G_CALLBACK (on_preferences_apply), self, 0);
  gtk_window_present (GTK_WINDOW (preferences));
}

/* Actions. */

/* The commands on the selected order, for the list's row menu and the
 * keyboard; each is enabled only when the order's status allows it. */
static const struct
{
  const char    *action;
  OdCommandType  type;
} order_actions[] = {
  { "order.add-item", OD_COMMAND_ADD_ITEM },
  { "order.place", OD_COMMAND_PLACE_ORDER },
  { "order.ship", OD_COMMAND_SHIP_ORDER },
  { "order.mark-delivered", OD_COMMAND_MARK_DELIVERED },
  { "order.cancel", OD_COMMAND_CANCEL_ORDER },
  { "order.add-note", OD_COMMAND_ADD_ORDER_NOTE },
  { "order.refund", OD_COMMAND_REFUND_ORDER },
};

static void
update_order_actions (OdWindow *self)
{
  const OdOrder *order = od_order_detail_get_order (self->order_detail);
  const char *selected = od_order_list_get_selected_order_id (self->order_list);
  /* The order shown is the selected one (not a created order shown
   * without being in the list, nor an old version of it). */
  gboolean current = order != NULL && self->outbox != NULL
                     && g_strcmp0 (order->order_id, selected) == 0;

  for (guint i = 0; i < G_N_ELEMENTS (order_actions); i++)
    gtk_widget_action_set_enabled (GTK_WIDGET (self), order_actions[i].action,
                                   current && od_order_allows (order, order_actions[i].type));
}

static void
order_action (GtkWidget  *widget,
              const char *action_name,
              GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  for (guint i = 0; i < G_N_ELEMENTS (order_actions); i++)
    if (g_str_equal (action_name, order_actions[i].action))
      open_command_dialog (self, order_actions[i].type, NULL);
}

static void
new_order_action (GtkWidget  *widget,
                  const char *action_name,
                  GVariant   *parameter)
{
  open_command_dialog (OD_WINDOW (widget), OD_COMMAND_CREATE_ORDER, NULL);
}

static void
search_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  show_detail (self, FALSE);
  od_order_list_focus_search (self->order_list);
}

static void
ledger_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  if (self->outbox == NULL)
    return;
  if (self->ledger == NULL)
    {
      self->ledger = od_ledger_window_new (GTK_WINDOW (self), self->outbox, self->cache);
      g_object_add_weak_pointer (G_OBJECT (self->ledger), (gpointer *) &self->ledger);
      g_signal_connect_object (self->ledger, "edit", G_CALLBACK (on_ledger_edit), self, 0);
    }
  gtk_window_present (GTK_WINDOW (self->ledger));
}

static void
reconnect_action (GtkWidget  *widget,
                  const char *action_name,
                  GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  if (self->sync == NULL)
    return;
  if (self->token == NULL)
    {
      od_window_show_preferences (self);
      return;
    }
  if (!od_sync_engine_get_running (self->sync))
    od_sync_engine_start (self->sync);
  else
    od_sync_engine_reconnect_now (self->sync);
  od_outbox_kick (self->outbox);
}

static void
on_rebuilt (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(OdWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!od_cache_rebuild_finish (OD_CACHE (source), result, &error))
    {
      g_autofree char *message = g_strdup_printf (_("Could not rebuild the cache: %s"), error->message);

      od_window_toast (self, message);
      return;
    }
  od_window_toast (self, _("Cache emptied: replaying the event log"));
  od_order_list_set_cache (self->order_list, self->cache);
  if (self->sync != NULL && self->token != NULL)
    {
      if (!od_sync_engine_get_running (self->sync))
        od_sync_engine_start (self->sync);
      else
        od_sync_engine_reconnect_now (self->sync);
    }
}

static void
on_rebuild_response (AdwMessageDialog *dialog,
                     const char       *response,
                     OdWindow         *self)
{
  if (g_strcmp0 (response, "rebuild") != 0 || self->cache == NULL)
    return;
  od_cache_rebuild_async (self->cache, self->cancellable, on_rebuilt, g_object_ref (self));
}

static void
rebuild_action (GtkWidget  *widget,
                const char *action_name,
                GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);
  GtkWidget *dialog;

  if (self->cache == NULL)
    return;
  dialog = adw_message_dialog_new (GTK_WINDOW (self), _("Rebuild the Cache?"),
                                   _("Every order is dropped from this computer and read again from the server’s event log. Queued commands are kept."));
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog),
                                    "cancel", _("_Cancel"),
                                    "rebuild", _("_Rebuild"),
                                    NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "rebuild",
                                              ADW_RESPONSE_DESTRUCTIVE);
  g_signal_connect_object (dialog, "response", G_CALLBACK (on_rebuild_response), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

gboolean
od_window_export_csv (OdWindow  *self,
                      GFile     *file,
                      GError   **error)
{
  g_autoptr(GFileOutputStream) stream = NULL;
  OdOrderListModel *model;

  g_return_val_if_fail (OD_IS_WINDOW (self), FALSE);

  model = od_order_list_get_model (self->order_list);
  if (model == NULL || self->cache == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, _("No cache is open"));
      return FALSE;
    }
  /* The rows of the view as it is filtered, searched and sorted now;
   * the core stamps the file with the position it is as of. */
  stream = g_file_replace (file, NULL, FALSE, G_FILE_CREATE_REPLACE_DESTINATION, NULL, error);
  return stream != NULL
      && od_query_export_csv (self->cache, od_order_list_model_get_query (model),
                              G_OUTPUT_STREAM (stream), NULL, error)
      && g_output_stream_close (G_OUTPUT_STREAM (stream), NULL, error);
}

typedef struct
{
  OdWindow         *self;
  GFile            *file;
  GFileOutputStream *stream;
} ExportJob;

static void
export_done (GObject      *source,
             GAsyncResult *result,
             gpointer      data)
{
  ExportJob *job = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = od_query_export_csv_finish (OD_CACHE (source), result, &error);

  if (ok)
    ok = g_output_stream_close (G_OUTPUT_STREAM (job->stream), NULL, &error);
  else
    {
      /* Closing a replacing stream with a cancelled cancellable keeps
       * the file that was there: a failed export leaves no half file. */
      g_autoptr(GCancellable) abort = g_cancellable_new ();

      g_cancellable_cancel (abort);
      g_output_stream_close (G_OUTPUT_STREAM (job->stream), abort, NULL);
    }
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    ;
  else if (ok)
    {
      g_autofree char *name = g_file_get_basename (job->file);
      g_autofree char *message = g_strdup_printf (_("Exported to %s"), name);

      od_window_toast (job->self, message);
    }
  else
    {
      g_autofree char *message = g_strdup_printf (_("Could not export: %s"), error->message);

      od_window_toast (job->self, message);
    }
  g_object_unref (job->self);
  g_object_unref (job->file);
  g_object_unref (job->stream);
  g_free (job);
}

static void
on_export_response (GtkNativeDialog *dialog,
                    int              response,
                    OdWindow        *self)
{
  g_autoptr(GError) error = NULL;
  OdOrderListModel *model = od_order_list_get_model (self->order_list);

  if (response == GTK_RESPONSE_ACCEPT && model != NULL && self->cache != NULL)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autoptr(GFileOutputStream) stream = g_file_replace (file, NULL, FALSE,
                                                            G_FILE_CREATE_REPLACE_DESTINATION,
                                                            NULL, &error);

      /* A million rows take seconds: written by a worker thread with its
       * own read connection while the window goes on. */
      if (stream != NULL)
        {
          ExportJob *job = g_new0 (ExportJob, 1);

          job->self = g_object_ref (self);
          job->file = g_object_ref (file);
          job->stream = g_steal_pointer (&stream);
          od_window_toast (self, _("Exporting…"));
          od_query_export_csv_async (self->cache, od_order_list_model_get_query (model),
                                     G_OUTPUT_STREAM (job->stream), self->cancellable,
                                     export_done, job);
        }
      else
        {
          g_autofree char *message = g_strdup_printf (_("Could not export: %s"), error->message);

          od_window_toast (self, message);
        }
    }
  gtk_native_dialog_destroy (dialog);
  g_object_unref (dialog);
}

static void
export_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);
  GtkFileChooserNative *chooser;
  g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();

  if (self->cache == NULL)
    return;
  chooser = gtk_file_chooser_native_new (_("Export Orders"), GTK_WINDOW (self),
                                         GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"), _("_Cancel"));
  gtk_file_filter_set_name (filter, _("CSV files"));
  gtk_file_filter_add_mime_type (filter, "text/csv");
  gtk_file_filter_add_suffix (filter, "csv");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), "orders.csv");
  g_signal_connect (chooser, "response", G_CALLBACK (on_export_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* Window state. */

static gboolean
od_window_close_request (GtkWindow *window)
{
  OdWindow *self = OD_WINDOW (window);
  GSettings *settings = od_application_get_settings ();

  if (settings != NULL)
    {
      int width;
      int height;

      gtk_window_get_default_size (window, &width, &height);
      g_settings_set_int (settings, "window-width", width);
      g_settings_set_int (settings, "window-height", height);
      g_settings_set_boolean (settings, "window-maximized", gtk_window_is_maximized (window));
    }
  close_session (self);
  return GTK_WINDOW_CLASS (od_window_parent_class)->close_request (window);
}

/* Getters for tests. */

OdOrderList *
od_window_get_order_list (OdWindow *self)
{
  return self->order_list;
}

OdOrderDetail *
od_window_get_order_detail (OdWindow *self)
{
  return self->order_detail;
}

OdLagIndicator *
od_window_get_lag_indicator (OdWindow *self)
{
  return self->lag_indicator;
}

OdVerifyBanner *
od_window_get_verify_banner (OdWindow *self)
{
  return self->verify_banner;
}

OdVerifyRunner *
od_window_get_verify_runner (OdWindow *self)
{
  return self->verifier;
}

OdCache *
od_window_get_cache (OdWindow *self)
{
  return self->cache;
}

OdOutbox *
od_window_get_outbox (OdWindow *self)
{
  return self->outbox;
}

OdSyncEngine *
od_window_get_sync_engine (OdWindow *self)
{
  return self->sync;
}

const char *
od_window_get_last_toast (OdWindow *self)
{
  return self->last_toast;
}

const char *
od_window_get_page (OdWindow *self)
{
  return gtk_stack_get_visible_child_name (self->main_stack);
}

/* Opens what the command line or the settings name, else the welcome
 * page.  Not in constructed(): the window's application is set after it. */
static void
od_window_start (OdWindow *self)
{
  OdApplication *app = OD_APPLICATION (gtk_window_get_application (GTK_WINDOW (self)));
  GSettings *settings = od_application_get_settings ();
  g_autofree char *last = settings ? g_settings_get_string (settings, "last-profile") : NULL;
  const char *server = app ? od_application_get_option_server (app) : NULL;
  g_autoptr(GError) error = NULL;

  if (settings != NULL)
    {
      gtk_window_set_default_size (GTK_WINDOW (self),
                                   g_settings_get_int (settings, "window-width"),
                                   g_settings_get_int (settings, "window-height"));
      if (g_settings_get_boolean (settings, "window-maximized"))
        gtk_window_maximize (GTK_WINDOW (self));
    }

  if (g_str_equal (PROFILE, "development"))
    gtk_widget_add_css_class (GTK_WIDGET (self), "devel");

  if (server == NULL && last != NULL && *last != '\0')
    server = last;
  if (server == NULL)
    {
      gtk_stack_set_visible_child_name (self->main_stack, "welcome");
      od_welcome_start_probe (self->welcome);
      return;
    }
  if (!od_window_open_profile (self, server,
                               app ? od_application_get_option_token (app) : NULL,
                               app ? od_application_get_option_cache (app) : NULL,
                               app ? od_application_get_option_offline (app) : FALSE,
                               &error))
    {
      g_autofree char *message = g_strdup_printf (_("Could not open the cache: %s"), error->message);

      gtk_stack_set_visible_child_name (self->main_stack, "welcome");
      od_welcome_start_probe (self->welcome);
      od_window_toast (self, message);
    }
}

/* The shortcuts window's own search entry, search button and section
 * menu have no accessible names in GTK 4.8. */
static void
label_shortcuts_controls (GtkWidget *widget)
{
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      if (GTK_IS_SEARCH_ENTRY (child))
        gtk_accessible_update_property (GTK_ACCESSIBLE (child), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                        _("Search shortcuts"), -1);
      else if (GTK_IS_MENU_BUTTON (child))
        {
          gtk_accessible_update_property (GTK_ACCESSIBLE (child), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                          _("Shortcut sections"), -1);
          od_accessible_label_buttons (child, _("Shortcut sections"));
          for (GtkWidget *inner = gtk_widget_get_first_child (child); inner != NULL;
               inner = gtk_widget_get_next_sibling (inner))
            if (GTK_IS_BUTTON (inner))
              gtk_accessible_update_property (GTK_ACCESSIBLE (inner), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                              _("Shortcut sections"), -1);
          continue;
        }
      else if (GTK_IS_BUTTON (child) && gtk_button_get_icon_name (GTK_BUTTON (child)) != NULL)
        gtk_accessible_update_property (GTK_ACCESSIBLE (child), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                        _("Search shortcuts"), -1);
      label_shortcuts_controls (child);
    }
}

OdWindow *
od_window_new (OdApplication *application)
{
  OdWindow *self = g_object_new (OD_TYPE_WINDOW, "application", application, NULL);
  GtkShortcutsWindow *help = gtk_application_window_get_help_overlay (GTK_APPLICATION_WINDOW (self));

  if (help != NULL)
    label_shortcuts_controls (GTK_WIDGET (help));

  od_window_start (self);
  return self;
}

static void
od_window_dispose (GObject *object)
{
  OdWindow *self = OD_WINDOW (object);

  self->disposed = TRUE;
  close_session (self);
  g_clear_handle_id (&self->relayout_source, g_source_remove);
  g_clear_handle_id (&self->label_toasts_source, g_source_remove);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_WINDOW);
  g_clear_object (&self->verifier);

  G_OBJECT_CLASS (od_window_parent_class)->dispose (object);
}

static void
od_window_finalize (GObject *object)
{
  OdWindow *self = OD_WINDOW (object);

  g_hash_table_unref (self->descriptions);
  g_array_unref (self->latencies);
  g_free (self->last_toast);

  G_OBJECT_CLASS (od_window_parent_class)->finalize (object);
}

static void
od_window_class_init (OdWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);

  object_class->dispose = od_window_dispose;
  object_class->finalize = od_window_finalize;
  window_class->close_request = od_window_close_request;

  g_type_ensure (OD_TYPE_WELCOME);
  g_type_ensure (OD_TYPE_ORDER_LIST);
  g_type_ensure (OD_TYPE_ORDER_DETAIL);
  g_type_ensure (OD_TYPE_LAG_INDICATOR);
  g_type_ensure (OD_TYPE_VERIFY_BANNER);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-window.ui");
  gtk_widget_class_bind_template_child (widget_class, OdWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, main_stack);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, welcome);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, window_title);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, pending_label);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, lag_indicator);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, progress_revealer);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, verify_banner);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, progress_label);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, header_bar);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, ledger_button);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, back_button);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, new_button);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, search_button);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, lag_header_box);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, lag_strip);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, leaflet);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, order_list);
  gtk_widget_class_bind_template_child (widget_class, OdWindow, order_detail);
  gtk_widget_class_bind_template_callback (widget_class, on_welcome_connect);
  gtk_widget_class_bind_template_callback (widget_class, on_selection_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_detail_command);
  gtk_widget_class_bind_template_callback (widget_class, on_detail_remove_item);
  gtk_widget_class_bind_template_callback (widget_class, on_fold_changed);

  gtk_widget_class_install_action (widget_class, "win.new-order", NULL, new_order_action);
  gtk_widget_class_install_action (widget_class, "win.search", NULL, search_action);
  gtk_widget_class_install_action (widget_class, "win.ledger", NULL, ledger_action);
  gtk_widget_class_install_action (widget_class, "win.reconnect", NULL, reconnect_action);
  gtk_widget_class_install_action (widget_class, "win.rebuild", NULL, rebuild_action);
  gtk_widget_class_install_action (widget_class, "win.export", NULL, export_action);
  gtk_widget_class_install_action (widget_class, "win.back", NULL, back_action);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Left, GDK_ALT_MASK, "win.back", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (order_actions); i++)
    gtk_widget_class_install_action (widget_class, order_actions[i].action, NULL, order_action);
}

static void
od_window_init (OdWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
#if ADW_CHECK_VERSION (1, 4, 0)
  setup_split_view (self);
#endif
  g_signal_connect_object (od_order_list_get_column_view (self->order_list), "activate",
                           G_CALLBACK (on_row_activated), self, G_CONNECT_SWAPPED);
  g_signal_connect (self, "notify::default-width", G_CALLBACK (on_default_width), NULL);
  on_fold_changed (self);
  if (od_application_get_settings () != NULL)
    g_signal_connect_object (od_application_get_settings (), "changed::ca-file",
                             G_CALLBACK (on_ca_file_changed), self, 0);
  self->descriptions = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  self->latencies = g_array_new (FALSE, FALSE, sizeof (double));
  /* Verification: its actions ("verify.run", …), the banner, and the lag
   * popover's part; a repair rewrote views, which are read again. */
  self->verifier = od_verify_runner_new ();
  gtk_widget_insert_action_group (GTK_WIDGET (self), "verify", od_verify_runner_get_actions (self->verifier));
  od_verify_banner_set_runner (self->verify_banner, self->verifier);
  od_lag_indicator_set_verify_runner (self->lag_indicator, self->verifier);
  g_signal_connect_swapped (self->verifier, "repaired", G_CALLBACK (on_verify_repaired), self);
  update_order_actions (self);
}
