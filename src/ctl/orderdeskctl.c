/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-core.h"

#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <signal.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes, documented in docs/orderdeskctl.md and --help. */
enum
{
  EXIT_OK = 0,
  EXIT_FAILURE_ = 1,  /* I/O, cache or unexpected error */
  EXIT_USAGE = 2,
  EXIT_REJECTED = 3,  /* the server refused the command (409/422/404…) */
  EXIT_UNREACHABLE = 4, /* the server could not be reached in time */
  EXIT_SIGN_IN = 5,   /* 401/403: token missing, unknown or not allowed */
  EXIT_INVALID = 6,   /* the command is invalid (checked before sending) */
};

static const char usage_text[] =
  "Usage: orderdeskctl [OPTION…] COMMAND [ARG…]\n"
  "\n"
  "The OrderDesk console core on the command line.\n"
  "\n"
  "Global options:\n"
  "  --server URL        server base URL (or ORDERDESK_SERVER; default: the URL the\n"
  "                      cache last synced with)\n"
  "  --token-file FILE   file whose first line is the bearer token (or ORDERDESK_TOKEN)\n"
  "  --cache FILE        cache file (default: $XDG_DATA_HOME/orderdesk/<server>.sqlite)\n"
  "  --timeout SECONDS   give up on an unreachable server after this long (default 60;\n"
  "                      0 = never)\n"
  "  --ca-file FILE      trust the certificate authorities in FILE (PEM) for an\n"
  "                      HTTPS server, instead of the system's\n"
  "  -q, --quiet         no progress on stderr\n"
  "  -h, --help          this help\n"
  "\n"
  "Commands:\n"
  "  sync [--follow]     catch up with the server's event log and send queued\n"
  "                      commands; exit 0 once caught up (--follow: keep following)\n"
  "  status [--json]     positions, lag, counts and outbox, from the cache only\n"
  "  submit FILE|-       submit one command (JSON as in api.md) through the outbox;\n"
  "                      waits until it is visible in the cache (--no-wait: until\n"
  "                      the server answered); prints the outcome as JSON\n"
  "  orders [--status S] [--search TEXT] [--limit N] [--sort updated|created|total|customer]\n"
  "         [--asc] [--json]\n"
  "                      list cached orders\n"
  "  export --csv FILE [--status S] [--search TEXT]\n"
  "                      write the cached orders as CSV (FILE may be -); the first\n"
  "                      line says the position and time the data is as of\n"
  "  outbox [--all]      list the outbox (queued, sent, accepted; --all: also final)\n"
  "  outbox send-as-me ID  send a command held because another sign-in queued it\n"
  "  outbox discard ID   discard a queued or held command\n"
  "\n"
  "Exit status: 0 ok, 1 error, 2 usage, 3 command rejected by the server,\n"
  "4 server unreachable (timeout or certificate refused), 5 sign-in needed (401/403),\n"
  "6 invalid command.\n";

typedef struct
{
  char         *server;
  char         *token;
  char         *cache_path;
  guint         timeout;
  gboolean      quiet;
  GTlsDatabase *trust;          /* --ca-file; NULL: the system's */

  GMainLoop    *loop;
  OdCache      *cache;
  OdSyncEngine *sync;
  OdOutbox     *outbox;
  int           exit_code;

  /* sync */
  gboolean      follow;
  gboolean      caught_up;
  /* submit */
  gint64        submit_id;
  gboolean      no_wait;
  gint64        last_progress;
} Ctl;

static int
usage_error (const char *fmt,
             ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("orderdeskctl: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputs ("\nTry 'orderdeskctl --help'.\n", stderr);
  va_end (ap);
  return EXIT_USAGE;
}

static char *
read_token_file (const char  *path,
                 GError     **error)
{
  g_autofree char *contents = NULL;
  char *nl;

  if (!g_file_get_contents (path, &contents, NULL, error))
    return NULL;
  nl = strpbrk (contents, "\r\n");
  if (nl)
    *nl = '\0';
  g_strstrip (contents);
  return g_steal_pointer (&contents);
}

static gboolean
open_cache (Ctl      *ctl,
            gboolean  need_server)
{
  g_autoptr(GError) error = NULL;

  if (ctl->cache_path == NULL)
    {
      if (ctl->server == NULL)
        {
          usage_error ("--server or --cache is needed");
          ctl->exit_code = EXIT_USAGE;
          return FALSE;
        }
      ctl->cache_path = od_cache_default_path (ctl->server);
    }
  ctl->cache = od_cache_open (ctl->cache_path, &error);
  if (ctl->cache == NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      ctl->exit_code = EXIT_FAILURE_;
      return FALSE;
    }
  /* Tuning for tests and benchmarks: events per catch-up transaction,
   * and how far behind a catch-up builds its indexes at the end. */
  if (g_getenv ("ORDERDESK_BULK_THRESHOLD") != NULL)
    od_cache_set_bulk_threshold (ctl->cache,
                                 g_ascii_strtoll (g_getenv ("ORDERDESK_BULK_THRESHOLD"), NULL, 10));
  if (g_getenv ("ORDERDESK_MAX_TRANSACTION") != NULL)
    od_cache_set_max_transaction (ctl->cache,
                                  (guint) g_ascii_strtoull (g_getenv ("ORDERDESK_MAX_TRANSACTION"),
                                                            NULL, 10));
  if (ctl->server == NULL)
    {
      OdSyncState st = { 0 };

      if (od_cache_get_sync_state (ctl->cache, &st, NULL) && st.server_url)
        ctl->server = g_strdup (st.server_url);
      od_sync_state_clear (&st);
    }
  if (need_server && ctl->server == NULL)
    {
      usage_error ("no server: give --server (the cache has never synced)");
      ctl->exit_code = EXIT_USAGE;
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* sync                                                                */

/* Held commands (queued by another sign-in) are not waited for: they
 * wait for the operator's consent (`outbox send-as-me`). */
static gboolean
outbox_settled (Ctl *ctl)
{
  return od_outbox_count_pending (ctl->outbox) == 0;
}

static void
check_sync_done (Ctl *ctl)
{
  if (ctl->follow || !ctl->caught_up)
    return;
  if (!outbox_settled (ctl))
    return;
  g_main_loop_quit (ctl->loop);
}

static void
on_caught_up (OdSyncEngine *sync,
              gint64        position,
              Ctl          *ctl)
{
  if (!ctl->quiet)
    g_printerr ("orderdeskctl: caught up at position %" G_GINT64_FORMAT "\n", position);
  ctl->caught_up = TRUE;
  check_sync_done (ctl);
}

static void
on_lag_state (OdLag      *lag,
              GParamSpec *pspec,
              Ctl        *ctl)
{
  /* A refused certificate does not fix itself by waiting: a one-shot
   * command says so at once (the console and --follow keep trying, as a
   * CA file may be given meanwhile). */
  if (od_lag_get_tls_errors (lag) != 0 && !ctl->follow)
    {
      g_printerr ("orderdeskctl: %s%s\n",
                  od_lag_get_last_error (lag) ? od_lag_get_last_error (lag) : "certificate refused",
                  ctl->trust == NULL ? " Give it with --ca-file." : "");
      ctl->exit_code = EXIT_UNREACHABLE;
      g_main_loop_quit (ctl->loop);
      return;
    }
  if (od_lag_get_state (lag) == OD_LAG_STATE_SIGN_IN_NEEDED)
    {
      g_printerr ("orderdeskctl: sign-in needed: %s\n",
                  od_lag_get_last_error (lag) ? od_lag_get_last_error (lag) : "");
      ctl->exit_code = EXIT_SIGN_IN;
      g_main_loop_quit (ctl->loop);
    }
  else if (od_lag_get_state (lag) == OD_LAG_STATE_CATCHING_UP
           || od_lag_get_state (lag) == OD_LAG_STATE_LIVE)
    {
      /* The server is back: what waits in the outbox goes now rather than
       * at the end of its backoff. */
      if (ctl->outbox != NULL)
        od_outbox_kick (ctl->outbox);
    }
  else if (!ctl->quiet && od_lag_get_state (lag) == OD_LAG_STATE_RECONNECTING)
    g_printerr ("orderdeskctl: %s (%s)\n", od_lag_describe (lag),
                od_lag_get_last_error (lag) ? od_lag_get_last_error (lag) : "");
}

static void
on_applied (OdCache *cache,
            gint64   position,
            Ctl     *ctl)
{
  gint64 now = g_get_monotonic_time ();

  if (!ctl->quiet && now - ctl->last_progress > G_USEC_PER_SEC)
    {
      OdLag *lag = od_sync_engine_get_lag (ctl->sync);

      ctl->last_progress = now;
      g_printerr ("orderdeskctl: applied %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT "\n",
                  position, od_lag_get_known_head (lag));
    }
  check_sync_done (ctl);
}

static void
on_command_changed (OdOutbox      *outbox,
                    gint64         id,
                    OdCommandState state,
                    Ctl           *ctl);

static gboolean
on_timeout (gpointer data)
{
  Ctl *ctl = data;

  if (ctl->caught_up && ctl->submit_id == 0)
    return G_SOURCE_CONTINUE;
  g_printerr ("orderdeskctl: gave up after %u s: %s\n", ctl->timeout,
              od_lag_get_last_error (od_sync_engine_get_lag (ctl->sync))
                ? od_lag_get_last_error (od_sync_engine_get_lag (ctl->sync))
                : "not caught up");
  ctl->exit_code = EXIT_UNREACHABLE;
  g_main_loop_quit (ctl->loop);
  return G_SOURCE_REMOVE;
}

static gboolean
on_signal_quit (gpointer data)
{
  Ctl *ctl = data;

  g_main_loop_quit (ctl->loop);
  return G_SOURCE_CONTINUE;
}

/* The cache could not commit (disk full, I/O error).  A one-shot sync
 * fails at once with the cause; --follow keeps going, as the sync engine
 * retries after a pause. */
static void
on_write_failed (OdCache *cache,
                 GError  *error,
                 Ctl     *ctl)
{
  g_printerr ("orderdeskctl: cache: %s\n", error ? error->message : "write failed");
  if (ctl->follow)
    return;
  ctl->exit_code = EXIT_FAILURE_;
  g_main_loop_quit (ctl->loop);
}

/* 401 on a command: the token is unknown; waiting will not help. */
static void
on_outbox_sign_in (OdOutbox *outbox,
                   Ctl      *ctl)
{
  if (ctl->follow)
    return;
  g_printerr ("orderdeskctl: sign-in needed: the server does not know this token\n");
  ctl->exit_code = EXIT_SIGN_IN;
  g_main_loop_quit (ctl->loop);
}

static void
start_online (Ctl *ctl)
{
  ctl->sync = od_sync_engine_new (ctl->cache, ctl->server, ctl->token);
  ctl->outbox = od_outbox_new (ctl->cache, ctl->server, ctl->token);
  if (ctl->trust != NULL)
    {
      od_sync_engine_set_tls_database (ctl->sync, ctl->trust);
      od_outbox_set_tls_database (ctl->outbox, ctl->trust);
    }
  g_signal_connect (ctl->sync, "caught-up", G_CALLBACK (on_caught_up), ctl);
  g_signal_connect (od_sync_engine_get_lag (ctl->sync), "notify::state",
                    G_CALLBACK (on_lag_state), ctl);
  g_signal_connect (ctl->cache, "applied", G_CALLBACK (on_applied), ctl);
  g_signal_connect (ctl->cache, "write-failed", G_CALLBACK (on_write_failed), ctl);
  g_signal_connect (ctl->outbox, "command-changed", G_CALLBACK (on_command_changed), ctl);
  g_signal_connect (ctl->outbox, "sign-in-needed", G_CALLBACK (on_outbox_sign_in), ctl);
  if (ctl->timeout > 0 && !ctl->follow)
    g_timeout_add_seconds (ctl->timeout, on_timeout, ctl);
  od_sync_engine_start (ctl->sync);
}

static int
cmd_sync (Ctl   *ctl,
          int    argc,
          char **argv)
{
  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--follow"))
        ctl->follow = TRUE;
      else
        return usage_error ("sync: unknown argument %s", argv[i]);
    }
  if (!open_cache (ctl, TRUE))
    return ctl->exit_code;
  start_online (ctl);
  g_main_loop_run (ctl->loop);
  return ctl->exit_code;
}

/* ------------------------------------------------------------------ */
/* submit                                                              */

static void
print_command (OdPendingCommand *c)
{
  g_autoptr(GString) out = g_string_new ("{");

  g_string_append_printf (out, "\"id\":%" G_GINT64_FORMAT ",", c->id);
  od_json_append_member (out, "state", od_command_state_name (c->state));
  g_string_append_c (out, ',');
  od_json_append_member (out, "idempotency_key", c->idempotency_key);
  g_string_append_c (out, ',');
  od_json_append_member (out, "order_id", c->order_id);
  g_string_append_c (out, ',');
  od_json_append_member (out, "type", c->type);
  if (c->position >= 0)
    g_string_append_printf (out, ",\"position\":%" G_GINT64_FORMAT ",\"version\":%"
                            G_GINT64_FORMAT, c->position, c->version);
  if (c->http_status)
    g_string_append_printf (out, ",\"http_status\":%u", c->http_status);
  if (c->code)
    {
      g_string_append_c (out, ',');
      od_json_append_member (out, "code", c->code);
    }
  if (c->detail)
    {
      g_string_append_c (out, ',');
      od_json_append_member (out, "detail", c->detail);
    }
  if (c->held)
    g_string_append (out, ",\"held\":true");
  if (c->identity_fp)
    {
      g_string_append_c (out, ',');
      od_json_append_member (out, "queued_by", c->identity_fp);
    }
  if (od_pending_command_latency_ms (c) >= 0)
    g_string_append_printf (out, ",\"latency_ms\":%.3f", od_pending_command_latency_ms (c));
  g_string_append_c (out, '}');
  g_print ("%s\n", out->str);
}

static void
on_command_changed (OdOutbox      *outbox,
                    gint64         id,
                    OdCommandState state,
                    Ctl           *ctl)
{
  if (ctl->submit_id == 0)
    {
      check_sync_done (ctl);
      return;
    }
  if (id != ctl->submit_id)
    return;
  if (state == OD_COMMAND_STATE_REJECTED || state == OD_COMMAND_STATE_VISIBLE
      || (state == OD_COMMAND_STATE_ACCEPTED && ctl->no_wait))
    {
      g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, id, NULL);

      if (c != NULL)
        {
          print_command (c);
          if (state == OD_COMMAND_STATE_REJECTED && c->http_status == 403)
            {
              g_printerr ("orderdeskctl: refused: this sign-in may not send commands"
                          " (403 %s): %s\n", c->code ? c->code : "forbidden",
                          c->detail ? c->detail : "");
              ctl->exit_code = EXIT_SIGN_IN;
            }
          else if (state == OD_COMMAND_STATE_REJECTED)
            {
              g_printerr ("orderdeskctl: rejected (%s): %s\n", c->code ? c->code : "?",
                          c->detail ? c->detail : "");
              ctl->exit_code = EXIT_REJECTED;
            }
        }
      g_main_loop_quit (ctl->loop);
    }
}

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  Ctl *ctl = data;
  g_autoptr(GError) error = NULL;
  gint64 id = od_outbox_submit_finish (OD_OUTBOX (source), result, &error);

  if (id < 0)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      ctl->exit_code = g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA)
                         ? EXIT_INVALID
                         : EXIT_FAILURE_;
      g_main_loop_quit (ctl->loop);
      return;
    }
  ctl->submit_id = id;
  /* It may have been answered before we learned its id. */
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (OD_OUTBOX (source), id, NULL);

    if (c != NULL && c->state != OD_COMMAND_STATE_QUEUED && c->state != OD_COMMAND_STATE_SENT)
      on_command_changed (OD_OUTBOX (source), id, c->state, ctl);
  }
}

static int
cmd_submit (Ctl   *ctl,
            int    argc,
            char **argv)
{
  const char *file = NULL;
  g_autofree char *body = NULL;
  g_autoptr(GError) error = NULL;
  gsize len;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--no-wait"))
        ctl->no_wait = TRUE;
      else if (file == NULL)
        file = argv[i];
      else
        return usage_error ("submit: unexpected argument %s", argv[i]);
    }
  if (file == NULL)
    return usage_error ("submit: FILE or - is needed");
  if (g_str_equal (file, "-"))
    {
      GString *s = g_string_new (NULL);
      char buf[4096];
      size_t n;

      while ((n = fread (buf, 1, sizeof buf, stdin)) > 0)
        g_string_append_len (s, buf, n);
      len = s->len;
      body = g_string_free (s, FALSE);
    }
  else if (!g_file_get_contents (file, &body, &len, &error))
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  if (strlen (body) != len)
    {
      g_printerr ("orderdeskctl: the command contains a NUL byte\n");
      return EXIT_INVALID;
    }
  /* A trailing newline from an editor or echo is not part of the JSON. */
  g_strchomp (body);
  if (!open_cache (ctl, TRUE))
    return ctl->exit_code;
  ctl->caught_up = FALSE;
  start_online (ctl);
  od_outbox_submit_json_async (ctl->outbox, body, NULL, submitted, ctl);
  g_main_loop_run (ctl->loop);
  return ctl->exit_code;
}

/* ------------------------------------------------------------------ */
/* status                                                              */

static int
cmd_status (Ctl   *ctl,
            int    argc,
            char **argv)
{
  gboolean json = FALSE;
  OdSyncState st = { 0 };
  gint64 counts[6];
  g_autoptr(GError) error = NULL;
  g_autoptr(OdOutbox) outbox = NULL;
  gint64 behind, now = g_get_real_time ();
  gint64 inconsistent;
  double seconds_behind = 0;
  guint pending;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--json"))
        json = TRUE;
      else
        return usage_error ("status: unknown argument %s", argv[i]);
    }
  if (!open_cache (ctl, FALSE))
    return ctl->exit_code;
  if (!od_cache_get_sync_state (ctl->cache, &st, &error)
      || !od_cache_get_status_counts (ctl->cache, counts, &error))
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  /* Orders the server sent events that break the protocol: not applied,
   * so the operator must know their rows are not current. */
  inconsistent = od_query_count_inconsistent (ctl->cache, &error);
  if (inconsistent < 0)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  outbox = od_outbox_new (ctl->cache, NULL, NULL);
  pending = od_outbox_count_pending (outbox);
  behind = MAX (0, st.known_head - st.applied_position);
  /* Offline, so the lag is counted from the last contact: anything the
   * server did since is unknown. */
  if (st.last_contact_at > 0)
    seconds_behind = (now - st.last_contact_at) / (double) G_USEC_PER_SEC;

  if (json)
    {
      g_autoptr(GString) out = g_string_new ("{");
      g_autofree char *contact = st.last_contact_at ? od_timestamp_format (st.last_contact_at)
                                                    : NULL;
      g_autofree char *last_event = st.last_event_at ? od_timestamp_format (st.last_event_at)
                                                     : NULL;

      g_string_append_printf (out,
                              "\"applied_position\":%" G_GINT64_FORMAT
                              ",\"known_head\":%" G_GINT64_FORMAT
                              ",\"events_behind\":%" G_GINT64_FORMAT
                              ",\"seconds_since_contact\":%.1f,",
                              st.applied_position, st.known_head, behind,
                              st.last_contact_at ? seconds_behind : -1.0);
      g_string_append (out, "\"last_contact_at\":");
      if (contact)
        od_json_append_string (out, contact);
      else
        g_string_append (out, "null");
      g_string_append (out, ",\"last_event_at\":");
      if (last_event)
        od_json_append_string (out, last_event);
      else
        g_string_append (out, "null");
      g_string_append (out, ",\"server_url\":");
      if (st.server_url)
        od_json_append_string (out, st.server_url);
      else
        g_string_append (out, "null");
      g_string_append (out, ",\"cache\":");
      od_json_append_string (out, ctl->cache_path);
      g_string_append_printf (out,
                              ",\"orders\":%" G_GINT64_FORMAT ",\"status_counts\":{"
                              "\"draft\":%" G_GINT64_FORMAT ",\"placed\":%" G_GINT64_FORMAT
                              ",\"shipped\":%" G_GINT64_FORMAT ",\"delivered\":%" G_GINT64_FORMAT
                              ",\"cancelled\":%" G_GINT64_FORMAT "},\"inconsistent_orders\":%"
                              G_GINT64_FORMAT ",\"pending_commands\":%u}",
                              counts[0], counts[OD_STATUS_DRAFT], counts[OD_STATUS_PLACED],
                              counts[OD_STATUS_SHIPPED], counts[OD_STATUS_DELIVERED],
                              counts[OD_STATUS_CANCELLED], inconsistent, pending);
      g_print ("%s\n", out->str);
    }
  else
    {
      g_autofree char *contact = st.last_contact_at ? od_timestamp_format (st.last_contact_at)
                                                    : g_strdup ("never");
      g_autofree char *last_event = st.last_event_at ? od_timestamp_format (st.last_event_at)
                                                     : g_strdup ("none");

      g_print ("cache:            %s\n", ctl->cache_path);
      g_print ("server:           %s\n", st.server_url ? st.server_url : "(never synced)");
      g_print ("applied position: %" G_GINT64_FORMAT "\n", st.applied_position);
      g_print ("known head:       %" G_GINT64_FORMAT " (%" G_GINT64_FORMAT " behind)\n",
               st.known_head, behind);
      g_print ("last contact:     %s\n", contact);
      g_print ("last event:       %s\n", last_event);
      g_print ("orders:           %" G_GINT64_FORMAT " (draft %" G_GINT64_FORMAT
               ", placed %" G_GINT64_FORMAT ", shipped %" G_GINT64_FORMAT
               ", delivered %" G_GINT64_FORMAT ", cancelled %" G_GINT64_FORMAT ")\n",
               counts[0], counts[OD_STATUS_DRAFT], counts[OD_STATUS_PLACED],
               counts[OD_STATUS_SHIPPED], counts[OD_STATUS_DELIVERED],
               counts[OD_STATUS_CANCELLED]);
      g_print ("inconsistent:     %" G_GINT64_FORMAT " orders%s\n", inconsistent,
               inconsistent > 0 ? " (their history from the server breaks the protocol; shown"
                                  " as of their last valid event)"
                                : "");
      g_print ("pending commands: %u\n", pending);
    }
  od_sync_state_clear (&st);
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* orders, export, outbox                                              */

static gboolean
parse_query_arg (OdOrderQuery *q,
                 int          *i,
                 int           argc,
                 char        **argv,
                 int          *rc)
{
  const char *a = argv[*i];

  if (g_str_equal (a, "--status") || g_str_equal (a, "--search") || g_str_equal (a, "--sort"))
    {
      const char *v;

      if (*i + 1 >= argc)
        {
          *rc = usage_error ("%s needs a value", a);
          return FALSE;
        }
      v = argv[++*i];
      if (g_str_equal (a, "--status"))
        {
          if (!od_order_status_from_name (v, &q->status))
            {
              *rc = usage_error ("unknown status %s (draft, placed, shipped, delivered, "
                                 "cancelled)", v);
              return FALSE;
            }
        }
      else if (g_str_equal (a, "--search"))
        q->search = v;
      else if (g_str_equal (v, "updated"))
        q->sort = OD_ORDER_SORT_UPDATED;
      else if (g_str_equal (v, "created"))
        q->sort = OD_ORDER_SORT_CREATED;
      else if (g_str_equal (v, "total"))
        q->sort = OD_ORDER_SORT_TOTAL;
      else if (g_str_equal (v, "customer"))
        q->sort = OD_ORDER_SORT_CUSTOMER, q->descending = FALSE;
      else
        {
          *rc = usage_error ("unknown sort %s", v);
          return FALSE;
        }
      return TRUE;
    }
  if (g_str_equal (a, "--asc"))
    {
      q->descending = FALSE;
      return TRUE;
    }
  if (g_str_equal (a, "--desc"))
    {
      q->descending = TRUE;
      return TRUE;
    }
  *rc = usage_error ("unknown argument %s", a);
  return FALSE;
}

static int
cmd_orders (Ctl   *ctl,
            int    argc,
            char **argv)
{
  OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
  guint64 limit = 50;
  gboolean json = FALSE;
  g_autoptr(GPtrArray) rows = NULL;
  g_autoptr(GError) error = NULL;
  int rc = 0;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--limit"))
        {
          if (i + 1 >= argc || !g_ascii_string_to_unsigned (argv[i + 1], 10, 1, 1000000, &limit,
                                                            NULL))
            return usage_error ("--limit needs a number from 1 to 1000000");
          i++;
        }
      else if (g_str_equal (argv[i], "--json"))
        json = TRUE;
      else if (!parse_query_arg (&q, &i, argc, argv, &rc))
        return rc;
    }
  if (!open_cache (ctl, FALSE))
    return ctl->exit_code;
  rows = od_query_orders (ctl->cache, &q, NULL, limit, &error);
  if (rows == NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  for (guint i = 0; i < rows->len; i++)
    {
      OdOrderRow *r = g_ptr_array_index (rows, i);

      if (json)
        {
          g_autoptr(GString) out = g_string_new ("{");

          od_json_append_member (out, "order_id", r->order_id);
          g_string_append_c (out, ',');
          od_json_append_member (out, "status", od_order_status_name (r->status));
          g_string_append_c (out, ',');
          od_json_append_member (out, "customer_name", r->customer_name);
          g_string_append_c (out, ',');
          od_json_append_member (out, "customer_email", r->customer_email);
          g_string_append_c (out, ',');
          od_json_append_member (out, "currency", r->currency);
          g_string_append_printf (out,
                                  ",\"item_count\":%" G_GINT64_FORMAT ",\"total_cents\":%"
                                  G_GINT64_FORMAT ",\"version\":%" G_GINT64_FORMAT ",",
                                  r->item_count, r->total_cents, r->version);
          od_json_append_member (out, "created_at", r->created_at);
          g_string_append_c (out, ',');
          od_json_append_member (out, "updated_at", r->updated_at);
          g_string_append_printf (out, ",\"inconsistent\":%s}",
                                  r->inconsistent ? "true" : "false");
          g_print ("%s\n", out->str);
        }
      else
        g_print ("%s  %-9s  %-24.24s  %5" G_GINT64_FORMAT "  %10.2f %s  %s%s\n", r->order_id,
                 od_order_status_name (r->status), r->customer_name, r->item_count,
                 r->total_cents / 100.0, r->currency, r->updated_at,
                 r->inconsistent ? "  INCONSISTENT" : "");
    }
  return EXIT_OK;
}

static int
cmd_export (Ctl   *ctl,
            int    argc,
            char **argv)
{
  OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
  const char *file = NULL;
  g_autoptr(GOutputStream) out = NULL;
  g_autoptr(GError) error = NULL;
  int rc = 0;

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--csv"))
        {
          if (i + 1 >= argc)
            return usage_error ("--csv needs a file");
          file = argv[++i];
        }
      else if (!parse_query_arg (&q, &i, argc, argv, &rc))
        return rc;
    }
  if (file == NULL)
    return usage_error ("export: --csv FILE is needed");
  if (!open_cache (ctl, FALSE))
    return ctl->exit_code;
  if (g_str_equal (file, "-"))
    out = g_unix_output_stream_new (1, FALSE);
  else
    {
      g_autoptr(GFile) f = g_file_new_for_commandline_arg (file);

      out = G_OUTPUT_STREAM (g_file_replace (f, NULL, FALSE, G_FILE_CREATE_NONE, NULL, &error));
      if (out == NULL)
        {
          g_printerr ("orderdeskctl: %s\n", error->message);
          return EXIT_FAILURE_;
        }
    }
  if (!od_query_export_csv (ctl->cache, &q, out, NULL, &error)
      || !g_output_stream_close (out, NULL, &error))
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  return EXIT_OK;
}

static void
outbox_action_done (GObject      *source,
                    GAsyncResult *result,
                    gpointer      data)
{
  Ctl *ctl = data;
  g_autoptr(GError) error = NULL;
  gboolean done = ctl->submit_id > 0
                    ? od_outbox_send_as_me_finish (OD_OUTBOX (source), result, &error)
                    : od_outbox_discard_finish (OD_OUTBOX (source), result, &error);

  if (error != NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      ctl->exit_code = EXIT_FAILURE_;
    }
  else if (!done)
    {
      g_printerr ("orderdeskctl: command %" G_GINT64_FORMAT " is not %s\n",
                  ABS (ctl->submit_id),
                  ctl->submit_id > 0 ? "held (queued by another sign-in)"
                                     : "waiting to be sent, or someone is sending it");
      ctl->exit_code = EXIT_REJECTED;
    }
  if (ctl->exit_code != EXIT_OK || ctl->submit_id < 0)
    {
      g_main_loop_quit (ctl->loop);
      return;
    }
  /* Sent as me: it goes now, and the command waits like `submit` does. */
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (OD_OUTBOX (source), ctl->submit_id, NULL);

    if (c != NULL && c->state != OD_COMMAND_STATE_QUEUED && c->state != OD_COMMAND_STATE_SENT)
      on_command_changed (OD_OUTBOX (source), c->id, c->state, ctl);
  }
}

/* outbox send-as-me ID | outbox discard ID: the operator's answer to a
 * command held because another sign-in queued it. */
static int
cmd_outbox_action (Ctl   *ctl,
                   int    argc,
                   char **argv)
{
  gboolean send = g_str_equal (argv[1], "send-as-me");
  gint64 id;

  if (argc != 3 || !g_ascii_string_to_signed (argv[2], 10, 1, G_MAXINT64, &id, NULL))
    return usage_error ("outbox %s: one command id is needed", argv[1]);
  if (!open_cache (ctl, send))
    return ctl->exit_code;
  if (send)
    {
      start_online (ctl);
      ctl->submit_id = id;
      od_outbox_send_as_me_async (ctl->outbox, id, NULL, outbox_action_done, ctl);
    }
  else
    {
      ctl->outbox = od_outbox_new (ctl->cache, NULL, NULL);
      od_outbox_set_identity (ctl->outbox, ctl->server, ctl->token);
      ctl->submit_id = -id;
      od_outbox_discard_async (ctl->outbox, id, NULL, outbox_action_done, ctl);
    }
  g_main_loop_run (ctl->loop);
  return ctl->exit_code;
}

static int
cmd_outbox (Ctl   *ctl,
            int    argc,
            char **argv)
{
  gboolean all = FALSE;
  g_autoptr(OdOutbox) outbox = NULL;
  g_autoptr(GPtrArray) list = NULL;
  g_autoptr(GError) error = NULL;

  if (argc >= 2 && (g_str_equal (argv[1], "send-as-me") || g_str_equal (argv[1], "discard")))
    return cmd_outbox_action (ctl, argc, argv);
  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--all"))
        all = TRUE;
      else
        return usage_error ("outbox: unknown argument %s", argv[i]);
    }
  if (!open_cache (ctl, FALSE))
    return ctl->exit_code;
  outbox = od_outbox_new (ctl->cache, NULL, NULL);
  /* Held commands are marked as such for this sign-in. */
  od_outbox_set_identity (outbox, ctl->server, ctl->token);
  list = od_outbox_list (outbox, all, all ? 1000 : 0, &error);
  if (list == NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  for (guint i = 0; i < list->len; i++)
    print_command (g_ptr_array_index (list, i));
  return EXIT_OK;
}

int
main (int    argc,
      char **argv)
{
  Ctl ctl = { 0 };
  const char *token_file = NULL;
  int first_cmd = -1;
  int rc;

  setlocale (LC_ALL, "");
  ctl.timeout = 60;
  ctl.server = g_strdup (g_getenv ("ORDERDESK_SERVER"));

  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];

      if (g_str_equal (a, "-h") || g_str_equal (a, "--help"))
        {
          fputs (usage_text, stdout);
          return EXIT_OK;
        }
      else if (g_str_equal (a, "-q") || g_str_equal (a, "--quiet"))
        ctl.quiet = TRUE;
      else if (g_str_equal (a, "--server") || g_str_equal (a, "--token-file")
               || g_str_equal (a, "--cache") || g_str_equal (a, "--timeout")
               || g_str_equal (a, "--ca-file"))
        {
          if (i + 1 >= argc)
            return usage_error ("%s needs a value", a);
          if (g_str_equal (a, "--server"))
            {
              g_free (ctl.server);
              ctl.server = g_strdup (argv[++i]);
            }
          else if (g_str_equal (a, "--token-file"))
            token_file = argv[++i];
          else if (g_str_equal (a, "--cache"))
            ctl.cache_path = g_strdup (argv[++i]);
          else if (g_str_equal (a, "--ca-file"))
            {
              g_autoptr(GError) error = NULL;

              g_clear_object (&ctl.trust);
              ctl.trust = g_tls_file_database_new (argv[++i], &error);
              if (ctl.trust == NULL)
                {
                  g_printerr ("orderdeskctl: --ca-file %s: %s\n", argv[i], error->message);
                  return EXIT_FAILURE_;
                }
            }
          else
            {
              guint64 t;

              if (!g_ascii_string_to_unsigned (argv[++i], 10, 0, 86400, &t, NULL))
                return usage_error ("--timeout needs a number of seconds");
              ctl.timeout = t;
            }
        }
      else if (a[0] == '-')
        return usage_error ("unknown option %s", a);
      else
        {
          first_cmd = i;
          break;
        }
    }
  if (first_cmd < 0)
    return usage_error ("no command given");

  if (token_file != NULL)
    {
      g_autoptr(GError) error = NULL;

      ctl.token = read_token_file (token_file, &error);
      if (ctl.token == NULL)
        {
          g_printerr ("orderdeskctl: %s\n", error->message);
          return EXIT_FAILURE_;
        }
    }
  else if (g_getenv ("ORDERDESK_TOKEN") != NULL)
    ctl.token = g_strdup (g_getenv ("ORDERDESK_TOKEN"));

  ctl.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGINT, on_signal_quit, &ctl);
  g_unix_signal_add (SIGTERM, on_signal_quit, &ctl);

  {
    const char *cmd = argv[first_cmd];
    int cargc = argc - first_cmd;
    char **cargv = argv + first_cmd;

    if (g_str_equal (cmd, "sync"))
      rc = cmd_sync (&ctl, cargc, cargv);
    else if (g_str_equal (cmd, "status"))
      rc = cmd_status (&ctl, cargc, cargv);
    else if (g_str_equal (cmd, "submit"))
      rc = cmd_submit (&ctl, cargc, cargv);
    else if (g_str_equal (cmd, "orders"))
      rc = cmd_orders (&ctl, cargc, cargv);
    else if (g_str_equal (cmd, "export"))
      rc = cmd_export (&ctl, cargc, cargv);
    else if (g_str_equal (cmd, "outbox"))
      rc = cmd_outbox (&ctl, cargc, cargv);
    else
      rc = usage_error ("unknown command %s", cmd);
  }

  if (ctl.sync)
    od_sync_engine_stop (ctl.sync);
  g_clear_object (&ctl.outbox);
  g_clear_object (&ctl.sync);
  if (ctl.cache)
    od_cache_close (ctl.cache);
  g_clear_object (&ctl.cache);
  g_main_loop_unref (ctl.loop);
  g_free (ctl.server);
  g_free (ctl.token);
  g_free (ctl.cache_path);
  g_clear_object (&ctl.trust);
  return rc;
}
