/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-store.h"
#include "od-store-sqlite.h"
#include "od-digest.h"
#ifdef OD_HAVE_POSTGRESQL
#include "od-store-postgres.h"
#endif

#include <string.h>

G_DEFINE_INTERFACE (OdStore, od_store, G_TYPE_OBJECT)

enum
{
  APPENDED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void
od_store_default_init (OdStoreInterface *iface)
{
  /* Emitted from any thread when new events may have become visible:
   * after this process commits, or when another instance sharing the
   * database does. */
  signals[APPENDED] = g_signal_new ("appended", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST,
                                    0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

void
od_store_emit_appended (OdStore *self)
{
  g_signal_emit (self, signals[APPENDED], 0);
}

OdStore *
od_store_open (const char  *uri,
               GError     **error)
{
  if (g_str_has_prefix (uri, "sqlite:"))
    return od_store_sqlite_new (uri + strlen ("sqlite:"), error);
  if (g_str_has_prefix (uri, "postgresql://") || g_str_has_prefix (uri, "postgres://")
      || g_str_has_prefix (uri, "postgresql:"))
    {
#ifdef OD_HAVE_POSTGRESQL
      return od_store_postgres_new (uri, error);
#else
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "this orderdesk-server was built without PostgreSQL support (-Dpostgresql=disabled): use sqlite:PATH");
      return NULL;
#endif
    }
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "unknown store '%s': use sqlite:PATH or postgresql://…", uri);
  return NULL;
}

gboolean
od_store_execute (OdStore  *self,
                  OdJob   **jobs,
                  guint     n_jobs,
                  GError  **error)
{
  return OD_STORE_GET_IFACE (self)->execute (self, jobs, n_jobs, error);
}

GPtrArray *
od_store_read_events (OdStore  *self,
                      gint64    after,
                      guint     limit,
                      gint64   *head,
                      GError  **error)
{
  return OD_STORE_GET_IFACE (self)->read_events (self, after, limit, head, error);
}

gboolean
od_store_visit_events (OdStore           *self,
                       gint64             after,
                       guint              limit,
                       gint64            *head,
                       OdEventVisitFunc   visit,
                       gpointer           user_data,
                       GError           **error)
{
  OdStoreInterface *iface = OD_STORE_GET_IFACE (self);
  g_autoptr(GPtrArray) events = NULL;

  if (iface->visit_events != NULL)
    return iface->visit_events (self, after, limit, head, visit, user_data, error);
  events = iface->read_events (self, after, limit, head, error);
  if (events == NULL)
    return FALSE;
  for (guint i = 0; i < events->len; i++)
    if (!visit (g_ptr_array_index (events, i), user_data))
      break;
  return TRUE;
}

gboolean
od_store_get_head (OdStore  *self,
                   gint64   *head,
                   GError  **error)
{
  return OD_STORE_GET_IFACE (self)->get_head (self, head, error);
}

gboolean
od_store_check (OdStore  *self,
                gint64   *head,
                GError  **error)
{
  OdStoreInterface *iface = OD_STORE_GET_IFACE (self);

  if (iface->check != NULL)
    return iface->check (self, head, error);
  return iface->get_head (self, head, error);
}

gboolean
od_store_digest (OdStore    *self,
                 gint64      after,
                 gint64      upto,
                 GChecksum  *sum,
                 gint64     *count,
                 GError    **error)
{
  OdStoreInterface *iface = OD_STORE_GET_IFACE (self);

  *count = 0;
  if (iface->digest != NULL)
    return iface->digest (self, after, upto, sum, count, error);

  /* Events up to a head once read never change, so pages read one after
   * another describe the same range as one read would. */
  while (after < upto)
    {
      g_autoptr(GPtrArray) events = NULL;

      events = iface->read_events (self, after, 10000, NULL, error);
      if (events == NULL)
        return FALSE;
      if (events->len == 0)
        break;
      for (guint i = 0; i < events->len; i++)
        {
          OdEvent *event = g_ptr_array_index (events, i);

          if (event->position > upto)
            return TRUE;
          od_digest_add_event (sum, event->position, event->order_id, event->version, event->type,
                               event->recorded_at, event->actor,
                               event->data ? event->data : "{}", -1);
          (*count)++;
          after = event->position;
        }
    }
  return TRUE;
}

/* Decimal digits without printf: replay formats millions of them. */
void
od_store_append_int (GString *out,
                     gint64   value)
{
  char buf[24];
  char *p = buf + sizeof buf;
  guint64 v = value < 0 ? -(guint64) value : (guint64) value;

  do
    *--p = '0' + v % 10;
  while ((v /= 10) != 0);
  if (value < 0)
    *--p = '-';
  g_string_append_len (out, p, buf + sizeof buf - p);
}

/* The bytes of od_event_append_json () or, for FRAME, of
 * od_event_append_sse (), without printf: replay and pages spend most of
 * their time here. */
void
od_store_append_event (GString       *out,
                        const OdEvent *event,
                        gboolean       frame)
{
  if (frame)
    {
      g_string_append_len (out, "id: ", 4);
      od_store_append_int (out, event->position);
      g_string_append_len (out, "\nevent: ", 8);
      g_string_append (out, event->type);
      g_string_append_len (out, "\ndata: ", 7);
    }
  g_string_append_len (out, "{\"position\":", 12);
  od_store_append_int (out, event->position);
  g_string_append_len (out, ",\"prev\":", 8);
  od_store_append_int (out, event->prev);
  g_string_append_c (out, ',');
  od_json_append_member (out, "order_id", event->order_id);
  g_string_append_len (out, ",\"version\":", 11);
  od_store_append_int (out, event->version);
  g_string_append_c (out, ',');
  od_json_append_member (out, "type", event->type);
  g_string_append_c (out, ',');
  od_json_append_member (out, "recorded_at", event->recorded_at);
  g_string_append_c (out, ',');
  od_json_append_member (out, "actor", event->actor);
  g_string_append_len (out, ",\"data\":", 8);
  g_string_append (out, event->data ? event->data : "{}");
  g_string_append_c (out, '}');
  if (frame)
    g_string_append_len (out, "\n\n", 2);
}

OdJob *
od_job_new (OdCommand  *command,
            const char *actor,
            const char *idempotency_key,
            const char *body,
            gsize       body_len)
{
  OdJob *job = g_new0 (OdJob, 1);

  job->command = command;
  job->actor = g_strdup (actor);
  job->idempotency_key = g_strdup (idempotency_key);
  if (body != NULL)
    {
      g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
      gsize len = sizeof job->body_sha256;

      g_checksum_update (sum, (const guchar *) body, body_len);
      g_checksum_get_digest (sum, job->body_sha256, &len);
    }
  return job;
}

void
od_job_free (OdJob *job)
{
  if (job == NULL)
    return;
  od_command_free (job->command);
  g_free (job->actor);
  g_free (job->idempotency_key);
  g_free (job->recorded_at);
  g_free (job->response);
  g_free (job->frame);
  g_free (job);
}

void
od_job_set_success (OdJob  *job,
                    gint64  version,
                    gint64  position)
{
  job->status = 200;
  job->version = version;
  job->position = position;
  g_free (job->response);
  job->response = g_strdup_printf ("{\"order_id\":\"%s\",\"version\":%" G_GINT64_FORMAT
                                   ",\"position\":%" G_GINT64_FORMAT "}",
                                   job->command->order_id, version, position);
}

/* Takes ownership of problem. */
void
od_job_set_problem (OdJob     *job,
                    OdProblem *problem)
{
  job->status = problem->status;
  job->position = 0;
  g_free (job->response);
  job->response = od_problem_to_json (problem);
  od_problem_free (problem);
}
