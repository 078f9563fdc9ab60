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

/* The main window.  It holds the profile's OdSession (the core object
 * that owns the cache, sync engine, outbox, trust and identity) and shows
 * it: the session's signals and properties drive the widgets, and the
 * widgets only read the cache through the core's queries. */

#define REFRESH_INTERVAL_MS 100
#define PROGRESS_THRESHOLD  500
/* The list and the detail ask for 350 px each, and a separator. */
#define FOLD_WIDTH          701


G_DEFINE_FINAL_TYPE (OdWindow, od_window, ADW_TYPE_APPLICATION_WINDOW)

static void update_pending (OdWindow *self);

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

  if (self->created_id == NULL || self->session == NULL)
    return;
  order = od_query_order (od_session_get_cache (self->session), self->created_id, NULL);
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
  _od_window_actions_update (self);
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
  od_order_list_set_cache (self->order_list, cache);
  od_order_detail_reload (self->order_detail);
}

static void
on_verify_repaired (OdWindow *self)
{
  if (self->session != NULL)
    on_cache_reset (od_session_get_cache (self->session), self);
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

  /* The session has counted already: its handlers run first. */
  if (self->session != NULL)
    {
      n = od_session_get_pending_commands (self->session);
      pending = od_outbox_pending_orders (od_session_get_outbox (self->session));
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
      double last;
      double p50;
      double p99;

      /* The session noted the latency before this handler ran. */
      od_session_get_latency (self->session, &last, &p50, &p99);
      if (od_pending_command_latency_ms (command) >= 0)
        od_lag_indicator_set_latency (self->lag_indicator, last, p50, p99);
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
      g_autofree char *why = command->detail != NULL
        ? od_format_refusal (command->type, command->order_id, command->code, command->detail)
        : NULL;

      /* TRANSLATORS: "Ship order refused: only a placed order can be shipped." */
      message = g_strdup_printf (_("%s refused: %s"), what, why ? why : _("no reason given"));
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

  if (self->session != NULL)
    {
      g_signal_handlers_disconnect_by_data (od_session_get_lag (self->session), self);
      g_signal_handlers_disconnect_by_data (od_session_get_outbox (self->session), self);
      g_signal_handlers_disconnect_by_data (od_session_get_cache (self->session), self);
      od_session_close (self->session);
    }
  g_clear_object (&self->session);
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
  g_autoptr(GError) error = NULL;

  if (self->session == NULL)
    return;
  if (!od_session_set_ca_file (self->session, path, &error))
    {
      /* TRANSLATORS: %s says why the file could not be read */
      g_autofree char *message = g_strdup_printf (_("The trusted certificate file cannot be used: %s"),
                                                  error->message);

      toast_with_action (self, message, _("Preferences"), "app.preferences");
    }
  od_verify_runner_set_tls_database (self->verifier, od_session_get_tls_database (self->session));
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
  od_session_sign_in (self->session, token);
  od_verify_runner_set_token (self->verifier, token);
  od_session_connect (self->session);
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
  g_autoptr(OdSession) session = NULL;
  GSettings *settings = od_application_get_settings ();
  OdCache *cache;
  OdOutbox *outbox;

  g_return_val_if_fail (OD_IS_WINDOW (self), FALSE);
  g_return_val_if_fail (server_url != NULL, FALSE);

  /* A small read cache, and catch-up committed in smaller transactions
   * than a tool would, so the list and the progress move meanwhile. */
  session = od_session_open (cache_path, server_url, OD_SESSION_FLAGS_INTERACTIVE, error);
  if (session == NULL)
    return FALSE;

  close_session (self);
  self->cancellable = g_cancellable_new ();
  self->session = g_steal_pointer (&session);
  cache = od_session_get_cache (self->session);
  outbox = od_session_get_outbox (self->session);
  od_verify_runner_set_session (self->verifier, cache, od_session_get_lag (self->session),
                                server_url);
  apply_tls_trust (self);
  /* Without a token yet (it is looked up below), commands wait. */
  od_session_sign_in (self->session, token);
  od_verify_runner_set_token (self->verifier, token);

  g_signal_connect (cache, "applied", G_CALLBACK (on_cache_applied), self);
  g_signal_connect (cache, "reset", G_CALLBACK (on_cache_reset), self);
  g_signal_connect (cache, "outbox-changed", G_CALLBACK (on_outbox_changed), self);
  g_signal_connect (outbox, "command-changed", G_CALLBACK (on_command_changed), self);
  g_signal_connect (outbox, "sign-in-needed", G_CALLBACK (on_sign_in_needed), self);
  g_signal_connect (od_session_get_lag (self->session), "notify",
                    G_CALLBACK (on_lag_notify), self);

  /* The cache shows at once, whatever the network does. */
  od_order_list_set_cache (self->order_list, cache);
  od_order_detail_set_cache (self->order_detail, cache);
  od_lag_indicator_set_lag (self->lag_indicator, od_session_get_lag (self->session));
  {
    OdSyncState state = { 0 };

    if (od_cache_get_sync_state (cache, &state, NULL))
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
  gint64 id = od_session_submit_finish (OD_SESSION (source), result, &error);

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

  if (self->session == NULL)
    {
      od_window_toast (self, _("Connect to a server first"));
      return;
    }
  data = g_new0 (SubmitData, 1);
  data->self = g_object_ref (self);
  data->command = od_command_copy (command);
  data->description = g_strdup (description);
  od_session_submit_async (self->session, data->command, NULL, on_submitted, data);
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

OdCommandDialog *
_od_window_open_command_dialog (OdWindow        *self,
                                OdCommandType    type,
                                const OdCommand *prefill)
{
  g_autoptr(OdOrder) edited = NULL;
  const OdOrder *order = od_order_detail_get_order (self->order_detail);
  OdCommandDialog *dialog;

  /* Editing a command: decide it against the order it was for, as the
   * cache has it now. */
  if (prefill != NULL && self->session != NULL && type != OD_COMMAND_CREATE_ORDER)
    {
      edited = od_query_order (od_session_get_cache (self->session), prefill->order_id, NULL);
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
  return _od_window_open_command_dialog (self, type, NULL);
}

static void
on_detail_command (OdWindow *self,
                   int       type)
{
  _od_window_open_command_dialog (self, type, NULL);
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

void
_od_window_show_detail (OdWindow *self,
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
on_selection_changed (OdWindow   *self,
                      const char *order_id)
{
  od_order_detail_show (self->order_detail, order_id);
  if (order_id != NULL && is_narrow (self))
    _od_window_show_detail (self, TRUE);
  _od_window_actions_update (self);
}

/* Enter or a double click on the row already selected opens it again. */
static void
on_row_activated (OdWindow *self,
                  guint     position)
{
  if (is_narrow (self) && od_order_list_get_selected_order_id (self->order_list) != NULL)
    _od_window_show_detail (self, TRUE);
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

  if (self->session != NULL && g_strcmp0 (url, od_session_get_server_url (self->session)) == 0)
    {
      if (token != NULL && *token != '\0')
        start_connection (self, token);
      else
        od_session_reconnect_now (self->session);
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
  OdPreferences *preferences = od_preferences_new (GTK_WINDOW (self),
                                                   self->session ? od_session_get_server_url (self->session)
                                                                 : NULL);

  g_signal_connect_object (preferences, "apply", G_CALLBACK (on_preferences_apply), self, 0);
  gtk_window_present (GTK_WINDOW (preferences));
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

OdSession *
od_window_get_session (OdWindow *self)
{
  return self->session;
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
  return self->session ? od_session_get_cache (self->session) : NULL;
}

OdOutbox *
od_window_get_outbox (OdWindow *self)
{
  return self->session ? od_session_get_outbox (self->session) : NULL;
}

OdSyncEngine *
od_window_get_sync_engine (OdWindow *self)
{
  return self->session ? od_session_get_sync_engine (self->session) : NULL;
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

  _od_window_class_actions_init (widget_class);
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
  /* Verification: its actions ("verify.run", …), the banner, and the lag
   * popover's part; a repair rewrote views, which are read again. */
  self->verifier = od_verify_runner_new ();
  gtk_widget_insert_action_group (GTK_WIDGET (self), "verify",
                                  od_verify_runner_get_actions (self->verifier));
  od_verify_banner_set_runner (self->verify_banner, self->verifier);
  od_lag_indicator_set_verify_runner (self->lag_indicator, self->verifier);
  g_signal_connect_swapped (self->verifier, "repaired", G_CALLBACK (on_verify_repaired), self);
  _od_window_actions_update (self);
}
