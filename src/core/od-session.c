/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <string.h>

#include "od-cache-private.h"
#include "od-session.h"

#define MAX_LATENCIES 256

struct _OdSession
{
  GObject        parent_instance;

  OdCache       *cache;
  OdSyncEngine  *sync;
  OdOutbox      *outbox;
  GTlsDatabase  *tls_database;

  char          *server_url;
  char          *token;
  char          *identity;

  /* Last values notified, so a property is notified only on change. */
  OdLagState     state;
  gint64         applied_position;
  gint64         known_head;
  guint          pending;

  GArray        *latencies;    /* double ms, oldest first */
  gint64         last_visible_at; /* of the command latency_last is of */
  gint64         last_visible_id;
  double         latency_last;
  double         latency_p50;
  double         latency_p99;

  gboolean       closed;
};

G_DEFINE_FINAL_TYPE (OdSession, od_session, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_CACHE,
  PROP_SYNC_ENGINE,
  PROP_OUTBOX,
  PROP_LAG,
  PROP_SERVER_URL,
  PROP_IDENTITY,
  PROP_STATE,
  PROP_APPLIED_POSITION,
  PROP_KNOWN_HEAD,
  PROP_PENDING_COMMANDS,
  PROP_LATENCY_LAST,
  PROP_LATENCY_P50,
  PROP_LATENCY_P99,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The token is a secret: no copy of it stays behind in freed memory. */
static void
clear_token (OdSession *self)
{
  if (self->token != NULL)
    memset (self->token, 0, strlen (self->token));
  g_clear_pointer (&self->token, g_free);
}

static void
set_token (OdSession  *self,
           const char *token)
{
  g_autofree char *identity = od_outbox_token_fingerprint (token);

  clear_token (self);
  self->token = g_strdup (token);
  if (g_strcmp0 (identity, self->identity) != 0)
    {
      g_free (self->identity);
      self->identity = g_steal_pointer (&identity);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_IDENTITY]);
    }
}

static void
update_pending (OdSession *self)
{
  guint pending = self->outbox ? od_outbox_count_pending (self->outbox) : 0;

  if (pending == self->pending)
    return;
  self->pending = pending;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PENDING_COMMANDS]);
}

static void
on_outbox_changed (OdCache   *cache,
                   OdSession *self)
{
  update_pending (self);
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
set_latency (OdSession *self,
             double    *field,
             double     value,
             guint      prop)
{
  if (*field == value)
    return;
  *field = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop]);
}

/* The last latency is that of the command visible last (by visible_at,
 * then id), whatever order the changes are noticed in: an answer handled
 * after a commit can report a command that became visible before the
 * commit's. */
static void
note_latency (OdSession              *self,
              const OdPendingCommand *command)
{
  g_autoptr(GArray) sorted = NULL;
  double ms = od_pending_command_latency_ms (command);
  gboolean newest;

  if (ms < 0)
    return;
  newest = command->visible_at > self->last_visible_at
           || (command->visible_at == self->last_visible_at && command->id >= self->last_visible_id);
  if (newest)
    {
      self->last_visible_at = command->visible_at;
      self->last_visible_id = command->id;
    }
  if (self->latencies->len >= MAX_LATENCIES)
    g_array_remove_index (self->latencies, 0);
  g_array_append_val (self->latencies, ms);
  sorted = g_array_copy (self->latencies);
  g_array_sort (sorted, compare_double);
  g_object_freeze_notify (G_OBJECT (self));
  if (newest)
    set_latency (self, &self->latency_last, ms, PROP_LATENCY_LAST);
  /* Nearest rank, rounded up: the p99 of fewer than 100 samples is the
   * largest, never below the latest one. */
  set_latency (self, &self->latency_p50, g_array_index (sorted, double, (sorted->len + 1) / 2 - 1),
               PROP_LATENCY_P50);
  set_latency (self, &self->latency_p99,
               g_array_index (sorted, double, (sorted->len * 99 + 99) / 100 - 1),
               PROP_LATENCY_P99);
  g_object_thaw_notify (G_OBJECT (self));
}

/* Connected when the outbox is made, so it runs before any user's
 * handler: they read the pending count and latencies as of this change. */
static void
on_command_changed (OdOutbox       *outbox,
                    gint64          id,
                    OdCommandState  state,
                    OdSession      *self)
{
  update_pending (self);
  if (state == OD_COMMAND_STATE_VISIBLE)
    {
      g_autoptr(OdPendingCommand) command = od_outbox_get (outbox, id, NULL);

      if (command != NULL)
        note_latency (self, command);
    }
}

static void
on_lag_notify (OdLag      *lag,
               GParamSpec *pspec,
               OdSession  *self)
{
  OdLagState state = od_lag_get_state (lag);
  gint64 applied = od_lag_get_applied_position (lag);
  gint64 head = od_lag_get_known_head (lag);

  g_object_freeze_notify (G_OBJECT (self));
  if (state != self->state)
    {
      self->state = state;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
    }
  if (applied != self->applied_position)
    {
      self->applied_position = applied;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_APPLIED_POSITION]);
    }
  if (head != self->known_head)
    {
      self->known_head = head;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_KNOWN_HEAD]);
    }
  g_object_thaw_notify (G_OBJECT (self));
}

OdSession *
od_session_open (const char      *cache_path,
                 const char      *server_url,
                 OdSessionFlags   flags,
                 GError         **error)
{
  g_autofree char *path = NULL;
  g_autoptr(OdCache) cache = NULL;
  OdSession *self;
  OdLag *lag;

  g_return_val_if_fail (cache_path != NULL || server_url != NULL, NULL);

  path = cache_path ? g_strdup (cache_path) : od_cache_default_path (server_url);
  cache = od_cache_open (path, error);
  if (cache == NULL)
    return NULL;

  if (flags & OD_SESSION_FLAGS_INTERACTIVE)
    {
      /* Pages of a memory-mapped database count in the process's resident
       * size as soon as a deep scroll touches them, and the read
       * connection's page cache grows to its limit: keep both small.  The
       * indexes make every screen query a short walk, so a small cache
       * costs little. */
      sqlite3_exec (od_cache_get_db (cache), "PRAGMA mmap_size=0; PRAGMA cache_size=-8192;",
                    NULL, NULL, NULL);
      od_cache_set_max_transaction (cache, 20000);
    }

  self = g_object_new (OD_TYPE_SESSION, NULL);
  self->cache = g_steal_pointer (&cache);
  if (server_url != NULL)
    self->server_url = g_strdup (server_url);
  else
    {
      OdSyncState state = { 0 };

      if (od_cache_get_sync_state (self->cache, &state, NULL))
        self->server_url = g_strdup (state.server_url);
      od_sync_state_clear (&state);
    }
  self->identity = od_outbox_token_fingerprint (NULL);

  self->sync = od_sync_engine_new (self->cache, self->server_url, NULL);
  self->outbox = od_outbox_new (self->cache, NULL, NULL);
  g_signal_connect_object (self->cache, "outbox-changed", G_CALLBACK (on_outbox_changed), self, 0);
  g_signal_connect_object (self->outbox, "command-changed", G_CALLBACK (on_command_changed), self, 0);
  lag = od_sync_engine_get_lag (self->sync);
  g_signal_connect_object (lag, "notify", G_CALLBACK (on_lag_notify), self, 0);
  self->state = od_lag_get_state (lag);
  self->applied_position = od_lag_get_applied_position (lag);
  self->known_head = od_lag_get_known_head (lag);
  self->pending = od_outbox_count_pending (self->outbox);
  return self;
}

/* Of the caches in the default place ($XDG_DATA_HOME/orderdesk, one per
 * server, written by this tool and by the console), the one that was last
 * in contact with its server, read with a read-only connection of its own
 * so that nothing is created, migrated or locked; NULL when none has ever
 * synced. */
char *
od_session_find_last_synced (void)
{
  g_autofree char *dir_path = g_build_filename (g_get_user_data_dir (), "orderdesk", NULL);
  g_autoptr(GDir) dir = g_dir_open (dir_path, 0, NULL);
  char *best = NULL;
  gint64 best_contact = 0;
  const char *name;

  if (dir == NULL)
    return NULL;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      sqlite3 *db = NULL;
      sqlite3_stmt *st = NULL;
      gint64 contact = 0;

      if (!g_str_has_suffix (name, ".sqlite"))
        continue;
      path = g_build_filename (dir_path, name, NULL);
      if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK)
        {
          sqlite3_busy_timeout (db, 2000);
          if (sqlite3_prepare_v2 (db, "SELECT last_contact_at FROM sync_state WHERE id = 1",
                                  -1, &st, NULL) == SQLITE_OK
              && sqlite3_step (st) == SQLITE_ROW)
            contact = sqlite3_column_int64 (st, 0);
          sqlite3_finalize (st);
        }
      sqlite3_close (db);
      if (contact > best_contact)
        {
          best_contact = contact;
          g_free (best);
          best = g_steal_pointer (&path);
        }
    }
  return best;
}

OdCache *
od_session_get_cache (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->cache;
}

OdSyncEngine *
od_session_get_sync_engine (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->sync;
}

OdOutbox *
od_session_get_outbox (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->outbox;
}

OdLag *
od_session_get_lag (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->sync ? od_sync_engine_get_lag (self->sync) : NULL;
}

const char *
od_session_get_server_url (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->server_url;
}

const char *
od_session_get_identity (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->identity;
}

gboolean
od_session_has_token (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), FALSE);
  return self->token != NULL;
}

OdLagState
od_session_get_state (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), 0);
  return self->state;
}

gint64
od_session_get_applied_position (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), 0);
  return self->applied_position;
}

gint64
od_session_get_known_head (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), 0);
  return self->known_head;
}

guint
od_session_get_pending_commands (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), 0);
  return self->pending;
}

void
od_session_get_latency (OdSession *self,
                        double    *last,
                        double    *p50,
                        double    *p99)
{
  g_return_if_fail (OD_IS_SESSION (self));
  if (last != NULL)
    *last = self->latency_last;
  if (p50 != NULL)
    *p50 = self->latency_p50;
  if (p99 != NULL)
    *p99 = self->latency_p99;
}

void
od_session_set_identity (OdSession  *self,
                         const char *token)
{
  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (!self->closed);

  set_token (self, token);
  od_outbox_set_identity (self->outbox, self->server_url, self->token);
  update_pending (self);
}

void
od_session_sign_in (OdSession  *self,
                    const char *token)
{
  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (!self->closed);

  set_token (self, token);
  od_sync_engine_set_server (self->sync, self->server_url, self->token);
  od_outbox_set_server (self->outbox, self->server_url, self->token);
  update_pending (self);
}

void
od_session_set_tls_database (OdSession    *self,
                             GTlsDatabase *database)
{
  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (database == NULL || G_IS_TLS_DATABASE (database));
  g_return_if_fail (!self->closed);

  g_set_object (&self->tls_database, database);
  od_sync_engine_set_tls_database (self->sync, database);
  od_outbox_set_tls_database (self->outbox, database);
}

GTlsDatabase *
od_session_get_tls_database (OdSession *self)
{
  g_return_val_if_fail (OD_IS_SESSION (self), NULL);
  return self->tls_database;
}

gboolean
od_session_set_ca_file (OdSession   *self,
                        const char  *path,
                        GError     **error)
{
  g_autoptr(GTlsDatabase) database = NULL;
  g_autoptr(GError) local_error = NULL;

  g_return_val_if_fail (OD_IS_SESSION (self), FALSE);

  if (path != NULL && *path != '\0')
    database = g_tls_file_database_new (path, &local_error);
  od_session_set_tls_database (self, database);
  if (local_error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }
  return TRUE;
}

void
od_session_connect (OdSession *self)
{
  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (!self->closed);

  od_sync_engine_start (self->sync);
  od_outbox_kick (self->outbox);
}

void
od_session_reconnect (OdSession *self)
{
  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (!self->closed);

  if (!od_sync_engine_get_running (self->sync))
    od_sync_engine_start (self->sync);
  else
    od_sync_engine_reconnect_now (self->sync);
  od_outbox_kick (self->outbox);
}

void
od_session_reconnect_now (OdSession *self)
{
  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (!self->closed);

  od_sync_engine_reconnect_now (self->sync);
}

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OdSession *self = g_task_get_source_object (task);
  GError *error = NULL;
  gint64 id = od_outbox_submit_finish (OD_OUTBOX (source), result, &error);

  if (id < 0)
    {
      g_task_return_error (task, error);
      return;
    }
  update_pending (self);
  g_task_return_int (task, id);
}

/* The task both submits finish with od_session_submit_finish (), or NULL
 * when the session is closed (the callback then has its error). */
static GTask *
submit_task_new (OdSession          *self,
                 GCancellable       *cancellable,
                 GAsyncReadyCallback callback,
                 gpointer            user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, od_session_submit_async);
  if (!self->closed)
    return task;
  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CLOSED, "The session is closed");
  g_object_unref (task);
  return NULL;
}

void
od_session_submit_async (OdSession          *self,
                         const OdCommand    *command,
                         GCancellable       *cancellable,
                         GAsyncReadyCallback callback,
                         gpointer            user_data)
{
  GTask *task;

  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (command != NULL);

  task = submit_task_new (self, cancellable, callback, user_data);
  if (task != NULL)
    od_outbox_submit_async (self->outbox, command, cancellable, submitted, task);
}

void
od_session_submit_json_async (OdSession          *self,
                              const char         *body,
                              GCancellable       *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer            user_data)
{
  GTask *task;

  g_return_if_fail (OD_IS_SESSION (self));
  g_return_if_fail (body != NULL);

  task = submit_task_new (self, cancellable, callback, user_data);
  if (task != NULL)
    od_outbox_submit_json_async (self->outbox, body, cancellable, submitted, task);
}

gint64
od_session_submit_finish (OdSession     *self,
                          GAsyncResult  *result,
                          GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), -1);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == od_session_submit_async, -1);

  return g_task_propagate_int (G_TASK (result), error);
}

static void
rebuilt (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OdSession *self = g_task_get_source_object (task);
  GError *error = NULL;

  if (!od_cache_rebuild_finish (OD_CACHE (source), result, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  /* The checkpoint went back to 0: the engine replays the log from it. */
  if (!self->closed && self->token != NULL)
    {
      if (!od_sync_engine_get_running (self->sync))
        od_sync_engine_start (self->sync);
      else
        od_sync_engine_reconnect_now (self->sync);
    }
  g_task_return_boolean (task, TRUE);
}

void
od_session_rebuild_async (OdSession          *self,
                          GCancellable       *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer            user_data)
{
  GTask *task;

  g_return_if_fail (OD_IS_SESSION (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, od_session_rebuild_async);
  od_cache_rebuild_async (self->cache, cancellable, rebuilt, task);
}

gboolean
od_session_rebuild_finish (OdSession     *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

void
od_session_close (OdSession *self)
{
  g_return_if_fail (OD_IS_SESSION (self));

  if (self->closed)
    return;
  self->closed = TRUE;
  if (self->sync != NULL)
    {
      g_signal_handlers_disconnect_by_data (od_sync_engine_get_lag (self->sync), self);
      od_sync_engine_stop (self->sync);
    }
  if (self->outbox != NULL)
    g_signal_handlers_disconnect_by_data (self->outbox, self);
  if (self->cache != NULL)
    g_signal_handlers_disconnect_by_data (self->cache, self);
  /* The outbox and the engine go before the cache closes: neither may
   * queue a write on a closed cache. */
  g_clear_object (&self->outbox);
  g_clear_object (&self->sync);
  if (self->cache != NULL)
    od_cache_close (self->cache);
}

static void
od_session_dispose (GObject *object)
{
  OdSession *self = OD_SESSION (object);

  od_session_close (self);
  g_clear_object (&self->cache);
  g_clear_object (&self->tls_database);

  G_OBJECT_CLASS (od_session_parent_class)->dispose (object);
}

static void
od_session_finalize (GObject *object)
{
  OdSession *self = OD_SESSION (object);

  clear_token (self);
  g_free (self->identity);
  g_free (self->server_url);
  g_array_unref (self->latencies);

  G_OBJECT_CLASS (od_session_parent_class)->finalize (object);
}

static void
od_session_get_property (GObject    *object,
                         guint       prop_id,
                         GValue     *value,
                         GParamSpec *pspec)
{
  OdSession *self = OD_SESSION (object);

  switch (prop_id)
    {
    case PROP_CACHE:
      g_value_set_object (value, self->cache);
      break;
    case PROP_SYNC_ENGINE:
      g_value_set_object (value, self->sync);
      break;
    case PROP_OUTBOX:
      g_value_set_object (value, self->outbox);
      break;
    case PROP_LAG:
      g_value_set_object (value, od_session_get_lag (self));
      break;
    case PROP_SERVER_URL:
      g_value_set_string (value, self->server_url);
      break;
    case PROP_IDENTITY:
      g_value_set_string (value, self->identity);
      break;
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_APPLIED_POSITION:
      g_value_set_int64 (value, self->applied_position);
      break;
    case PROP_KNOWN_HEAD:
      g_value_set_int64 (value, self->known_head);
      break;
    case PROP_PENDING_COMMANDS:
      g_value_set_uint (value, self->pending);
      break;
    case PROP_LATENCY_LAST:
      g_value_set_double (value, self->latency_last);
      break;
    case PROP_LATENCY_P50:
      g_value_set_double (value, self->latency_p50);
      break;
    case PROP_LATENCY_P99:
      g_value_set_double (value, self->latency_p99);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_session_class_init (OdSessionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;

  object_class->dispose = od_session_dispose;
  object_class->finalize = od_session_finalize;
  object_class->get_property = od_session_get_property;

  properties[PROP_CACHE] = g_param_spec_object ("cache", NULL, NULL, OD_TYPE_CACHE, flags);
  properties[PROP_SYNC_ENGINE] = g_param_spec_object ("sync-engine", NULL, NULL,
                                                      OD_TYPE_SYNC_ENGINE, flags);
  properties[PROP_OUTBOX] = g_param_spec_object ("outbox", NULL, NULL, OD_TYPE_OUTBOX, flags);
  properties[PROP_LAG] = g_param_spec_object ("lag", NULL, NULL, OD_TYPE_LAG, flags);
  properties[PROP_SERVER_URL] = g_param_spec_string ("server-url", NULL, NULL, NULL, flags);
  properties[PROP_IDENTITY] = g_param_spec_string ("identity", NULL, NULL, NULL, flags);
  properties[PROP_STATE] = g_param_spec_enum ("state", NULL, NULL, OD_TYPE_LAG_STATE,
                                              OD_LAG_STATE_OFFLINE, flags);
  properties[PROP_APPLIED_POSITION] = g_param_spec_int64 ("applied-position", NULL, NULL,
                                                          G_MININT64, G_MAXINT64, 0, flags);
  properties[PROP_KNOWN_HEAD] = g_param_spec_int64 ("known-head", NULL, NULL,
                                                    G_MININT64, G_MAXINT64, 0, flags);
  properties[PROP_PENDING_COMMANDS] = g_param_spec_uint ("pending-commands", NULL, NULL,
                                                         0, G_MAXUINT, 0, flags);
  properties[PROP_LATENCY_LAST] = g_param_spec_double ("latency-last", NULL, NULL,
                                                       -1, G_MAXDOUBLE, -1, flags);
  properties[PROP_LATENCY_P50] = g_param_spec_double ("latency-p50", NULL, NULL,
                                                      -1, G_MAXDOUBLE, -1, flags);
  properties[PROP_LATENCY_P99] = g_param_spec_double ("latency-p99", NULL, NULL,
                                                      -1, G_MAXDOUBLE, -1, flags);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
od_session_init (OdSession *self)
{
  self->latencies = g_array_new (FALSE, FALSE, sizeof (double));
  self->latency_last = -1;
  self->latency_p50 = -1;
  self->latency_p99 = -1;
}
