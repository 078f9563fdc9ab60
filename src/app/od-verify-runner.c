/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-application.h"
#include "od-lag-indicator.h"
#include "od-verify-runner.h"

/* Runs od-verify for the console: from the menu or the lag popover
 * (everything, at full speed), or by itself after a long catch-up (since
 * the last verified position, paced, on its worker thread: the list and
 * sync go on).  It owns the "verify" actions and says what it found in
 * words the banner and the popover show. */

struct _OdVerifyRunner
{
  GObject             parent_instance;

  OdCache            *cache;
  OdLag              *lag;
  char               *url;
  char               *token;
  GTlsDatabase       *tls;
  GSimpleActionGroup *actions;

  GCancellable       *cancellable;
  gboolean            running;
  gboolean            automatic;
  gboolean            repairing;
  double              fraction;
  char               *progress_text;
  char               *verified_text;
  OdVerifyOutcome     outcome;
  char               *message;

  /* For the automatic run: the applied position when the session last
   * was not live (a catch-up's start), or -1 while live. */
  gint64              catch_up_from;
  OdLagState          lag_state;
};

G_DEFINE_FINAL_TYPE (OdVerifyRunner, od_verify_runner, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_RUNNING,
  PROP_AUTOMATIC,
  PROP_FRACTION,
  PROP_PROGRESS_TEXT,
  PROP_VERIFIED_TEXT,
  PROP_OUTCOME,
  PROP_MESSAGE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_REPAIRED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void
set_string (OdVerifyRunner *self,
            char          **field,
            const char     *value,
            guint           prop)
{
  if (g_strcmp0 (*field, value) == 0)
    return;
  g_free (*field);
  *field = g_strdup (value);
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop]);
}

static void
set_fraction (OdVerifyRunner *self,
              double          fraction)
{
  if (self->fraction == fraction)
    return;
  self->fraction = fraction;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_FRACTION]);
}

static void
set_outcome (OdVerifyRunner  *self,
             OdVerifyOutcome  outcome,
             const char      *message)
{
  set_string (self, &self->message, message, PROP_MESSAGE);
  if (self->outcome == outcome)
    return;
  self->outcome = outcome;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OUTCOME]);
}

static void
update_actions (OdVerifyRunner *self)
{
  gboolean can_start = self->cache != NULL && !self->running;
  GAction *action;

  action = g_action_map_lookup_action (G_ACTION_MAP (self->actions), "run");
  g_simple_action_set_enabled (G_SIMPLE_ACTION (action), can_start);
  action = g_action_map_lookup_action (G_ACTION_MAP (self->actions), "repair");
  g_simple_action_set_enabled (G_SIMPLE_ACTION (action), can_start);
  action = g_action_map_lookup_action (G_ACTION_MAP (self->actions), "cancel");
  g_simple_action_set_enabled (G_SIMPLE_ACTION (action), self->running);
}

static void
set_running (OdVerifyRunner *self,
             gboolean        running,
             gboolean        automatic)
{
  if (self->automatic != automatic)
    {
      self->automatic = automatic;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_AUTOMATIC]);
    }
  if (self->running != running)
    {
      self->running = running;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
    }
  update_actions (self);
}

/* "Verified up to P · T" from the cache's last run. */
static void
update_verified_text (OdVerifyRunner *self)
{
  gint64 when = 0, upto = 0;
  g_autofree char *result = NULL;
  g_autofree char *text = NULL;
  g_autofree char *time = NULL;

  if (self->cache == NULL)
    {
      set_string (self, &self->verified_text, NULL, PROP_VERIFIED_TEXT);
      return;
    }
  if (!od_verify_get_last (self->cache, &when, &upto, &result, NULL))
    {
      set_string (self, &self->verified_text, _("Never verified"), PROP_VERIFIED_TEXT);
      return;
    }
  time = od_format_time_of_day_or_date (when);
  if (g_strcmp0 (result, "differs") == 0)
    /* TRANSLATORS: the last verification found differences: "Differences
     * found, checked up to 12,345 · 14:03" */
    text = g_strdup_printf (_("Differences found, checked up to %'lld · %s"), (long long) upto, time);
  else
    /* TRANSLATORS: "Verified up to 12,345 · 14:03": the event position the
     * cache was last proved right up to, and when */
    text = g_strdup_printf (_("Verified up to %'lld · %s"), (long long) upto, time);
  set_string (self, &self->verified_text, text, PROP_VERIFIED_TEXT);
}

/* What differed, counted, with the range of positions. */
static char *
describe (const OdVerifyReport *report,
          gboolean              repaired)
{
  g_autoptr(GPtrArray) parts = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *list = NULL;
  guint n_events = report->positions->len;
  guint n_orders = report->orders->len;
  gint64 first = G_MAXINT64, last = 0;

  if (n_events > 0)
    g_ptr_array_add (parts, g_strdup_printf (repaired
                                             ? ngettext ("%u event replaced", "%u events replaced", n_events)
                                             : ngettext ("%u event differs", "%u events differ", n_events),
                                             n_events));
  if (n_orders > 0)
    g_ptr_array_add (parts, g_strdup_printf (repaired
                                             ? ngettext ("%u order repaired", "%u orders repaired", n_orders)
                                             : ngettext ("%u order differs", "%u orders differ", n_orders),
                                             n_orders));
  if (report->counts_differed)
    g_ptr_array_add (parts, g_strdup (repaired ? _("status counts repaired")
                                      : _("status counts differ")));
  g_ptr_array_add (parts, NULL);
  list = g_strjoinv (", ", (char **) parts->pdata);
  for (guint i = 0; i < n_events; i++)
    {
      gint64 p = g_array_index (report->positions, gint64, i);

      first = MIN (first, p);
      last = MAX (last, p);
    }
  if (n_events == 0)
    {
      first = report->after + 1;
      last = report->upto;
    }
  if (first == last && repaired)
    /* TRANSLATORS: "Cache repaired: 1 event replaced (position 120)." */
    return g_strdup_printf (_("Cache repaired: %s (position %'lld)."), list, (long long) first);
  if (first == last)
    /* TRANSLATORS: "The cache differs from the server: 1 event differs
     * (position 120)." */
    return g_strdup_printf (_("The cache differs from the server: %s (position %'lld)."), list,
                            (long long) first);
  if (repaired)
    /* TRANSLATORS: "Cache repaired: 3 events replaced, 2 orders repaired
     * (positions 120 to 450)." */
    return g_strdup_printf (_("Cache repaired: %s (positions %'lld to %'lld)."), list,
                            (long long) first, (long long) last);
  /* TRANSLATORS: "The cache differs from the server: 3 events differ, 2
   * orders differ (positions 120 to 450)." */
  return g_strdup_printf (_("The cache differs from the server: %s (positions %'lld to %'lld)."),
                          list, (long long) first, (long long) last);
}

typedef struct
{
  OdVerifyRunner *self;
  OdCache        *cache;   /* the session it ran on */
  gboolean        repair;
  gboolean        automatic;
} Run;

static void
on_step (OdVerifyStep step,
         gint64       done,
         gint64       total,
         gpointer     user_data)
{
  Run *run = user_data;
  OdVerifyRunner *self = run->self;
  g_autofree char *text = NULL;

  if (run->cache != self->cache || !self->running)
    return;
  if (step == OD_VERIFY_STEP_EVENTS)
    /* TRANSLATORS: verification progress: "Step 1 of 2: comparing events
     * with the server, 30,000 of 100,000" (positions) */
    text = g_strdup_printf (_("Step 1 of 2: comparing events with the server, %'lld of %'lld"),
                            (long long) done, (long long) total);
  else
    /* TRANSLATORS: verification progress: "Step 2 of 2: checking orders,
     * 4,096 of 20,000" */
    text = g_strdup_printf (_("Step 2 of 2: checking orders, %'lld of %'lld"),
                            (long long) done, (long long) total);
  set_string (self, &self->progress_text, text, PROP_PROGRESS_TEXT);
  set_fraction (self, total > 0 ? CLAMP ((double) done / total, 0.0, 1.0) : 1.0);
}

static void
run_free (Run *run)
{
  g_object_unref (run->self);
  g_clear_object (&run->cache);
  g_free (run);
}

static void
on_run_done (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Run *run = user_data;
  OdVerifyRunner *self = run->self;
  g_autoptr(GError) error = NULL;
  g_autoptr(OdVerifyReport) report = od_verify_run_finish (result, &error);

  /* Another session since: not ours to say anything about. */
  if (run->cache != self->cache)
    {
      run_free (run);
      return;
    }
  g_clear_object (&self->cancellable);
  set_string (self, &self->progress_text, NULL, PROP_PROGRESS_TEXT);
  set_fraction (self, 0.0);
  update_verified_text (self);
  if (report != NULL && od_verify_report_clean (report))
    {
      g_autofree char *text = NULL;

      /* TRANSLATORS: a verification asked for found nothing wrong */
      text = g_strdup_printf (_("The cache is right: verified against the server up to position %'lld."),
                              (long long) report->upto);
      if (!run->automatic)
        set_outcome (self, OD_VERIFY_OUTCOME_CLEAN, text);
      else if (self->outcome == OD_VERIFY_OUTCOME_CLEAN)
        set_outcome (self, OD_VERIFY_OUTCOME_NONE, NULL);
    }
  else if (report != NULL)
    {
      g_autofree char *text = describe (report, report->repaired);

      set_outcome (self, report->repaired ? OD_VERIFY_OUTCOME_REPAIRED : OD_VERIFY_OUTCOME_DIFFERS,
                   text);
      if (report->repaired)
        g_signal_emit (self, signals[SIGNAL_REPAIRED], 0);
    }
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    ;
  else if (g_error_matches (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_FOREIGN_LOG))
    set_outcome (self, OD_VERIFY_OUTCOME_FOREIGN,
                 _("This cache was made from another server’s log: it is not this server’s data and "
                   "cannot be repaired. Rebuild the cache to see this server’s orders."));
  else if (g_error_matches (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_SIGN_IN))
    set_outcome (self, OD_VERIFY_OUTCOME_FAILED,
                 _("The cache could not be verified: the server refused the token. Sign in again."));
  else
    {
      /* TRANSLATORS: %s says why (the server's answer, a network error) */
      g_autofree char *text = g_strdup_printf (_("The cache could not be verified: %s"), error->message);

      set_outcome (self, OD_VERIFY_OUTCOME_FAILED, text);
    }
  set_running (self, FALSE, FALSE);
  run_free (run);
}

gboolean
od_verify_runner_start (OdVerifyRunner *self,
                        gboolean        repair,
                        gboolean        automatic)
{
  Run *run;

  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), FALSE);

  if (self->cache == NULL || self->running)
    return FALSE;
  run = g_new0 (Run, 1);
  run->self = g_object_ref (self);
  run->cache = g_object_ref (self->cache);
  run->repair = repair;
  run->automatic = automatic;
  self->cancellable = g_cancellable_new ();
  self->repairing = repair;
  if (!automatic && self->outcome != OD_VERIFY_OUTCOME_NONE)
    set_outcome (self, OD_VERIFY_OUTCOME_NONE, NULL);
  set_string (self, &self->progress_text,
              repair ? _("Repairing the cache…") : _("Verifying the cache…"), PROP_PROGRESS_TEXT);
  set_fraction (self, 0.0);
  set_running (self, TRUE, automatic);
  /* Everything when asked for; after a catch-up, what came since the
   * last verified position (-1). */
  od_verify_run_full_async (self->cache, self->url, self->token, self->tls, automatic ? -1 : 0, repair,
                            automatic, on_step, run, NULL, self->cancellable, on_run_done, run);
  return TRUE;
}

void
od_verify_runner_cancel (OdVerifyRunner *self)
{
  g_return_if_fail (OD_IS_VERIFY_RUNNER (self));

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
}

/* After a catch-up of more than verify-after-events events, once live,
 * verify what came (if the setting allows). */
static void
on_lag_notify (OdLag          *lag,
               GParamSpec     *pspec,
               OdVerifyRunner *self)
{
  OdLagState state = od_lag_get_state (lag);
  GSettings *settings = od_application_get_settings ();
  gint64 applied = od_lag_get_applied_position (lag);

  if (state == self->lag_state)
    return;
  self->lag_state = state;
  /* A catch-up is what was applied between leaving live (or opening
   * the cache) and being live again, whether or not the engine said
   * "catching up" on the way. */
  if (state != OD_LAG_STATE_LIVE && self->catch_up_from < 0)
    self->catch_up_from = applied;
  else if (state == OD_LAG_STATE_LIVE && self->catch_up_from >= 0)
    {
      gint64 caught_up = applied - self->catch_up_from;

      self->catch_up_from = -1;
      if (settings != NULL && g_settings_get_boolean (settings, "verify-automatically")
          && caught_up > g_settings_get_int (settings, "verify-after-events"))
        od_verify_runner_start (self, FALSE, TRUE);
    }
}

void
od_verify_runner_set_session (OdVerifyRunner *self,
                              OdCache        *cache,
                              OdLag          *lag,
                              const char     *server_url)
{
  g_return_if_fail (OD_IS_VERIFY_RUNNER (self));

  od_verify_runner_cancel (self);
  g_clear_object (&self->cancellable);
  if (self->lag != NULL)
    g_signal_handlers_disconnect_by_data (self->lag, self);
  g_set_object (&self->lag, lag);
  g_set_object (&self->cache, cache);
  g_free (self->url);
  self->url = g_strdup (server_url);
  g_clear_pointer (&self->token, g_free);
  self->lag_state = lag ? od_lag_get_state (lag) : OD_LAG_STATE_OFFLINE;
  self->catch_up_from = cache != NULL && self->lag_state != OD_LAG_STATE_LIVE
                          ? od_cache_get_applied_position (cache) : -1;
  if (lag != NULL)
    g_signal_connect (lag, "notify", G_CALLBACK (on_lag_notify), self);
  set_string (self, &self->progress_text, NULL, PROP_PROGRESS_TEXT);
  set_fraction (self, 0.0);
  set_outcome (self, OD_VERIFY_OUTCOME_NONE, NULL);
  set_running (self, FALSE, FALSE);
  update_verified_text (self);
}

void
od_verify_runner_set_token (OdVerifyRunner *self,
                            const char     *token)
{
  g_return_if_fail (OD_IS_VERIFY_RUNNER (self));

  g_free (self->token);
  self->token = g_strdup (token);
}

void
od_verify_runner_set_tls_database (OdVerifyRunner *self,
                                   GTlsDatabase   *database)
{
  g_return_if_fail (OD_IS_VERIFY_RUNNER (self));

  g_set_object (&self->tls, database);
}

static void
run_activated (GSimpleAction *action,
               GVariant      *parameter,
               gpointer       user_data)
{
  od_verify_runner_start (user_data, FALSE, FALSE);
}

static void
repair_activated (GSimpleAction *action,
                  GVariant      *parameter,
                  gpointer       user_data)
{
  od_verify_runner_start (user_data, TRUE, FALSE);
}

static void
cancel_activated (GSimpleAction *action,
                  GVariant      *parameter,
                  gpointer       user_data)
{
  od_verify_runner_cancel (user_data);
}

static void
dismiss_activated (GSimpleAction *action,
                   GVariant      *parameter,
                   gpointer       user_data)
{
  set_outcome (user_data, OD_VERIFY_OUTCOME_NONE, NULL);
}

GActionGroup *
od_verify_runner_get_actions (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), NULL);

  return G_ACTION_GROUP (self->actions);
}

gboolean
od_verify_runner_get_running (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), FALSE);
  return self->running;
}

gboolean
od_verify_runner_get_automatic (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), FALSE);
  return self->automatic;
}

double
od_verify_runner_get_fraction (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), 0.0);
  return self->fraction;
}

const char *
od_verify_runner_get_progress_text (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), NULL);
  return self->progress_text;
}

const char *
od_verify_runner_get_verified_text (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), NULL);
  return self->verified_text;
}

OdVerifyOutcome
od_verify_runner_get_outcome (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), OD_VERIFY_OUTCOME_NONE);
  return self->outcome;
}

const char *
od_verify_runner_get_message (OdVerifyRunner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_RUNNER (self), NULL);
  return self->message;
}

OdVerifyRunner *
od_verify_runner_new (void)
{
  return g_object_new (OD_TYPE_VERIFY_RUNNER, NULL);
}

static void
od_verify_runner_dispose (GObject *object)
{
  OdVerifyRunner *self = OD_VERIFY_RUNNER (object);

  od_verify_runner_cancel (self);
  g_clear_object (&self->cancellable);
  if (self->lag != NULL)
    g_signal_handlers_disconnect_by_data (self->lag, self);
  g_clear_object (&self->lag);
  g_clear_object (&self->cache);
  g_clear_object (&self->tls);
  g_clear_object (&self->actions);

  G_OBJECT_CLASS (od_verify_runner_parent_class)->dispose (object);
}

static void
od_verify_runner_finalize (GObject *object)
{
  OdVerifyRunner *self = OD_VERIFY_RUNNER (object);

  g_free (self->url);
  g_free (self->token);
  g_free (self->progress_text);
  g_free (self->verified_text);
  g_free (self->message);

  G_OBJECT_CLASS (od_verify_runner_parent_class)->finalize (object);
}

static void
od_verify_runner_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  OdVerifyRunner *self = OD_VERIFY_RUNNER (object);

  switch (prop_id)
    {
    case PROP_RUNNING:
      g_value_set_boolean (value, self->running);
      break;
    case PROP_AUTOMATIC:
      g_value_set_boolean (value, self->automatic);
      break;
    case PROP_FRACTION:
      g_value_set_double (value, self->fraction);
      break;
    case PROP_PROGRESS_TEXT:
      g_value_set_string (value, self->progress_text);
      break;
    case PROP_VERIFIED_TEXT:
      g_value_set_string (value, self->verified_text);
      break;
    case PROP_OUTCOME:
      g_value_set_int (value, self->outcome);
      break;
    case PROP_MESSAGE:
      g_value_set_string (value, self->message);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_verify_runner_class_init (OdVerifyRunnerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_verify_runner_dispose;
  object_class->finalize = od_verify_runner_finalize;
  object_class->get_property = od_verify_runner_get_property;

  properties[PROP_RUNNING] =
    g_param_spec_boolean ("running", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_AUTOMATIC] =
    g_param_spec_boolean ("automatic", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_FRACTION] =
    g_param_spec_double ("fraction", NULL, NULL, 0.0, 1.0, 0.0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_PROGRESS_TEXT] =
    g_param_spec_string ("progress-text", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_VERIFIED_TEXT] =
    g_param_spec_string ("verified-text", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_OUTCOME] =
    g_param_spec_int ("outcome", NULL, NULL, OD_VERIFY_OUTCOME_NONE, OD_VERIFY_OUTCOME_FAILED,
                      OD_VERIFY_OUTCOME_NONE,
                      G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_MESSAGE] =
    g_param_spec_string ("message", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* The cache's views were rewritten: whoever shows them reads again. */
  signals[SIGNAL_REPAIRED] = g_signal_new ("repaired", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                           NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
od_verify_runner_init (OdVerifyRunner *self)
{
  static const GActionEntry entries[] = {
    { "run", run_activated },
    { "repair", repair_activated },
    { "cancel", cancel_activated },
    { "dismiss", dismiss_activated },
  };

  self->catch_up_from = -1;
  self->actions = g_simple_action_group_new ();
  g_action_map_add_action_entries (G_ACTION_MAP (self->actions), entries, G_N_ELEMENTS (entries), self);
  update_actions (self);
}
