/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-core.h"

#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <signal.h>
#include <locale.h>
#include <sys/prctl.h>
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
  EXIT_DIFFERS = 7,   /* verify: the cache differs from the server (not repaired) */
  EXIT_FOREIGN = 8,   /* verify: the cache is not of this server's log */
};

/* Every option, of every command: GOptionContext fills these.  Global
 * options may come before or after the command. */
static struct
{
  /* global */
  char     *server;
  char     *token_file;
  char     *cache;
  char     *timeout;
  char     *ca_file;
  gboolean  quiet;
  gboolean  help;
  gboolean  version;
  /* commands */
  gboolean  follow;
  gboolean  json;
  gboolean  no_wait;
  gboolean  all;
  gboolean  asc;
  gboolean  desc;
  gboolean  provenance;
  char     *status;
  char     *search;
  char     *sort;
  char     *limit;
  char     *csv;
  gboolean  repair;
  char     *after;
} opt;

static const GOptionEntry global_entries[] = {
  { "server", 0, 0, G_OPTION_ARG_STRING, &opt.server,
    "Server base URL (or ORDERDESK_SERVER; default: see below)", "URL" },
  { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.token_file,
    "File whose first line is the bearer token (or ORDERDESK_TOKEN)", "FILE" },
  { "cache", 0, 0, G_OPTION_ARG_FILENAME, &opt.cache,
    "Cache file (default: $XDG_DATA_HOME/orderdesk/<server>.sqlite)", "FILE" },
  { "timeout", 0, 0, G_OPTION_ARG_STRING, &opt.timeout,
    "Give up when not done after this long (default 60; 0 = never)", "SECONDS" },
  { "ca-file", 0, 0, G_OPTION_ARG_FILENAME, &opt.ca_file,
    "For HTTPS: trust the authorities in FILE (PEM), not the system's", "FILE" },
  { "quiet", 'q', 0, G_OPTION_ARG_NONE, &opt.quiet, "No progress on stderr", NULL },
  { "help", 'h', 0, G_OPTION_ARG_NONE, &opt.help, "Show this help", NULL },
  { "version", 0, 0, G_OPTION_ARG_NONE, &opt.version, "Print the version and exit", NULL },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry sync_entries[] = {
  { "follow", 0, 0, G_OPTION_ARG_NONE, &opt.follow,
    "Keep following the server (until Ctrl+C or SIGTERM)", NULL },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry status_entries[] = {
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt.json, "One JSON object", NULL },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry submit_entries[] = {
  { "no-wait", 0, 0, G_OPTION_ARG_NONE, &opt.no_wait,
    "Wait only until the server answered, not until the change is in the cache", NULL },
  G_OPTION_ENTRY_NULL
};

#define QUERY_ENTRIES \
  { "status", 0, 0, G_OPTION_ARG_STRING, &opt.status, \
    "Only orders in this status: draft, placed, shipped, delivered, cancelled, " \
    "partially_refunded or refunded", "S" }, \
  { "search", 0, 0, G_OPTION_ARG_STRING, &opt.search, \
    "Order id prefix, words of the customer's name or e-mail, or SKU prefix", "TEXT" }, \
  { "sort", 0, 0, G_OPTION_ARG_STRING, &opt.sort, \
    "updated (default), created, total or customer", "KEY" }, \
  { "asc", 0, 0, G_OPTION_ARG_NONE, &opt.asc, "Ascending", NULL }, \
  { "desc", 0, 0, G_OPTION_ARG_NONE, &opt.desc, \
    "Descending (the default, except for --sort customer)", NULL }

static const GOptionEntry orders_entries[] = {
  QUERY_ENTRIES,
  { "limit", 0, 0, G_OPTION_ARG_STRING, &opt.limit, "At most N orders (default 50)", "N" },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt.json, "One JSON object per line, no header", NULL },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry export_entries[] = {
  { "csv", 0, 0, G_OPTION_ARG_FILENAME, &opt.csv, "Write CSV to FILE (- for stdout)", "FILE" },
  QUERY_ENTRIES,
  { "provenance", 0, 0, G_OPTION_ARG_NONE, &opt.provenance,
    "Start with a '# orderdesk export: data as of position …' line (not CSV)", NULL },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry outbox_entries[] = {
  { "all", 0, 0, G_OPTION_ARG_NONE, &opt.all,
    "Also commands that are final (visible, rejected, discarded), newest first", NULL },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry verify_entries[] = {
  { "repair", 0, 0, G_OPTION_ARG_NONE, &opt.repair,
    "Repair what differs (events fetched again, orders folded again)", NULL },
  { "after", 0, 0, G_OPTION_ARG_STRING, &opt.after,
    "Only events after position P, and the orders they touch (default 0: everything)", "P" },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt.json, "One JSON object", NULL },
  G_OPTION_ENTRY_NULL
};

static const char exit_status_text[] =
  "Without --server, the server the cache last synced with is used; without --server\n"
  "and --cache, the cache (in $XDG_DATA_HOME/orderdesk) that synced last.\n"
  "\n"
  "Exit status: 0 ok, 1 error, 2 usage, 3 command rejected by the server,\n"
  "4 not done within --timeout (server unreachable, commands not settled) or\n"
  "certificate refused, 5 sign-in needed (401/403), 6 invalid command,\n"
  "7 verify: the cache differs from the server (not repaired),\n"
  "8 verify: the cache is not of this server's log, 130/143 stopped by SIGINT/SIGTERM\n"
  "before done (sync --follow: 0).\n"
  "\n"
  "Documentation: docs/orderdeskctl.md in the OrderDesk sources; the commands'\n"
  "JSON is described in docs/protocol.md (\"Commands: POST /v1/commands\").";

typedef struct
{
  char         *server;
  char         *token;
  char         *cache_path;
  guint         timeout;
  gboolean      quiet;
  GTlsDatabase *trust;          /* --ca-file; NULL: the system's */

  gboolean      done;           /* the main loop's work is over (ctl_quit) */
  OdSession    *session;        /* the cache, sync engine and outbox */
  OdCache      *cache;          /* the session's */
  int           exit_code;

  /* sync */
  gboolean      follow;
  gboolean      caught_up;
  /* submit */
  gint64        submit_id;
  gboolean      one_command;  /* submit, outbox send-as-me: done when it is, not when caught up */
  gboolean      no_wait;
  gint64        last_progress;
} Ctl;

/* The command being run, for the hint after a usage error. */
static const char *usage_command;

static int
usage_error (const char *fmt,
             ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("orderdeskctl: ", stderr);
  vfprintf (stderr, fmt, ap);
  fprintf (stderr, "\nTry 'orderdeskctl %s%s--help'.\n",
           usage_command ? usage_command : "", usage_command ? " " : "");
  va_end (ap);
  return EXIT_USAGE;
}

/* Text from the server or the cache, made safe for a terminal: control
 * characters (C0, DEL, C1), bidirectional overrides, embeddings, isolates
 * and marks, and line or paragraph separators become visible escapes,
 * bytes that are not UTF-8 become \xHH, and a backslash is doubled, so
 * that a hostile server can neither drive the terminal (clear it, set its
 * title, move the cursor), nor reorder what is shown, nor start a line
 * that looks like one of ours. */
static char *
tty_text (const char *text)
{
  GString *out;
  const char *p;

  if (text == NULL)
    return g_strdup ("");
  out = g_string_sized_new (strlen (text));
  p = text;
  while (*p)
    {
      gunichar c = g_utf8_get_char_validated (p, -1);

      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          g_string_append_printf (out, "\\x%02X", (guchar) *p);
          p++;
          continue;
        }
      if (c == '\\')
        g_string_append (out, "\\\\");
      else if (c == '\n')
        g_string_append (out, "\\n");
      else if (c == '\r')
        g_string_append (out, "\\r");
      else if (c == '\t')
        g_string_append (out, "\\t");
      else if (c < 0x20 || (c >= 0x7f && c < 0xa0))
        g_string_append_printf (out, "\\x%02X", c);
      else if (c == 0x061c || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e)
               || (c >= 0x2066 && c <= 0x2069) || c == 0x2028 || c == 0x2029)
        g_string_append_printf (out, "\\u%04X", c);
      else
        g_string_append_unichar (out, c);
      p = g_utf8_next_char (p);
    }
  return g_string_free (out, FALSE);
}

/* Columns a character takes in a terminal. */
static guint
char_width (gunichar c)
{
  if (g_unichar_iszerowidth (c))
    return 0;
  return g_unichar_iswide (c) ? 2 : 1;
}

static guint
text_width (const char *text)
{
  guint width = 0;

  for (const char *p = text; *p; p = g_utf8_next_char (p))
    width += char_width (g_utf8_get_char (p));
  return width;
}

/* `text` (valid UTF-8) cut to at most `max` columns, ending in "…" when
 * cut. */
static char *
text_truncate (const char *text,
               guint       max)
{
  GString *out;
  guint width = 0;

  if (text_width (text) <= max)
    return g_strdup (text);
  out = g_string_new (NULL);
  for (const char *p = text; *p; p = g_utf8_next_char (p))
    {
      guint w = char_width (g_utf8_get_char (p));

      if (width + w > max - 1)
        break;
      g_string_append_unichar (out, g_utf8_get_char (p));
      width += w;
    }
  g_string_append (out, "…");
  return g_string_free (out, FALSE);
}

/* Appends `text` padded with spaces to `width` columns, on the left
 * (right-aligned) or the right. */
static void
append_padded (GString    *out,
               const char *text,
               guint       width,
               gboolean    right_align)
{
  guint w = text_width (text);

  if (right_align)
    for (; w < width; w++)
      g_string_append_c (out, ' ');
  g_string_append (out, text);
  if (!right_align)
    for (; w < width; w++)
      g_string_append_c (out, ' ');
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

/* Ends run_loop ().  A flag rather than g_main_loop_quit (): the sync
 * engine refreshes the lag while it starts, before the loop runs (a
 * refused certificate or sign-in can show then), and a quit before
 * g_main_loop_run () is forgotten.  Such a quit once came with caught-up,
 * and that sync waited out its --timeout and exited 4. */
static void
ctl_quit (Ctl *ctl)
{
  ctl->done = TRUE;
  g_main_context_wakeup (NULL);
}

static gboolean
open_cache (Ctl      *ctl,
            gboolean  need_server)
{
  g_autoptr(GError) error = NULL;

  if (ctl->cache_path == NULL && ctl->server == NULL)
    {
      ctl->cache_path = od_session_find_last_synced ();
      if (ctl->cache_path == NULL)
        {
          usage_error ("no cache has synced yet: give --server URL (or --cache FILE)");
          ctl->exit_code = EXIT_USAGE;
          return FALSE;
        }
    }
  /* Without --server, the session takes the URL the cache last synced
   * with. */
  ctl->session = od_session_open (ctl->cache_path, ctl->server, OD_SESSION_FLAGS_NONE, &error);
  if (ctl->session == NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      ctl->exit_code = EXIT_FAILURE_;
      return FALSE;
    }
  ctl->cache = od_session_get_cache (ctl->session);
  /* Tuning for tests and benchmarks: events per catch-up transaction,
   * and how far behind a catch-up builds its indexes at the end. */
  if (g_getenv ("ORDERDESK_BULK_THRESHOLD") != NULL)
    od_cache_set_bulk_threshold (ctl->cache,
                                 g_ascii_strtoll (g_getenv ("ORDERDESK_BULK_THRESHOLD"), NULL, 10));
  if (g_getenv ("ORDERDESK_BULK_MIN") != NULL)
    od_cache_set_bulk_min (ctl->cache, g_ascii_strtoll (g_getenv ("ORDERDESK_BULK_MIN"), NULL, 10));
  /* Without --follow the process ends once caught up: giving the
   * catch-up's memory back first would only cost time. */
  od_cache_set_keep_memory (ctl->cache, !ctl->follow);
  if (g_getenv ("ORDERDESK_MAX_TRANSACTION") != NULL)
    od_cache_set_max_transaction (ctl->cache,
                                  (guint) g_ascii_strtoull (g_getenv ("ORDERDESK_MAX_TRANSACTION"),
                                                            NULL, 10));
  if (ctl->server == NULL)
    ctl->server = g_strdup (od_session_get_server_url (ctl->session));
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
  return od_outbox_count_pending (od_session_get_outbox (ctl->session)) == 0;
}

static void
check_sync_done (Ctl *ctl)
{
  /* A command in flight ends the run by its own outcome: the cache may
   * catch up with it (and the outbox look settled) before the outbox
   * has told us its id. */
  if (ctl->follow || ctl->one_command || !ctl->caught_up)
    return;
  if (!outbox_settled (ctl))
    return;
  ctl_quit (ctl);
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
      g_autofree char *why = tty_text (od_lag_get_last_error (lag) ? od_lag_get_last_error (lag)
                                                                   : "certificate refused");

      g_printerr ("orderdeskctl: %s%s\n", why,
                  ctl->trust == NULL ? " Give it with --ca-file." : "");
      ctl->exit_code = EXIT_UNREACHABLE;
      ctl_quit (ctl);
      return;
    }
  if (od_lag_get_state (lag) == OD_LAG_STATE_SIGN_IN_NEEDED)
    {
      g_autofree char *why = tty_text (od_lag_get_last_error (lag));

      g_printerr ("orderdeskctl: sign-in needed: %s\n", why);
      ctl->exit_code = EXIT_SIGN_IN;
      ctl_quit (ctl);
    }
  else if (od_lag_get_state (lag) == OD_LAG_STATE_CATCHING_UP
           || od_lag_get_state (lag) == OD_LAG_STATE_LIVE)
    {
      /* The server is back: what waits in the outbox goes now rather than
       * at the end of its backoff. */
      od_outbox_kick (od_session_get_outbox (ctl->session));
    }
  else if (!ctl->quiet && od_lag_get_state (lag) == OD_LAG_STATE_RECONNECTING)
    {
      g_autofree char *why = tty_text (od_lag_get_last_error (lag));
      g_autofree char *state = od_lag_describe (lag);

      g_printerr ("orderdeskctl: %s (%s)\n", state, why);
    }
}

static void
on_applied (OdCache *cache,
            gint64   position,
            Ctl     *ctl)
{
  gint64 now = g_get_monotonic_time ();

  if (!ctl->quiet && now - ctl->last_progress > G_USEC_PER_SEC)
    {
      OdLag *lag = od_session_get_lag (ctl->session);

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

/* Another process answered a command of this identity.  The outbox
 * announces only the commands it has seen; one another process queued
 * and answered (while the event was already applied here) changes
 * nothing else, and a caught-up sync waited for it forever. */
static void
on_outbox_changed (OdCache *cache,
                   Ctl     *ctl)
{
  check_sync_done (ctl);
}

static gboolean
on_timeout (gpointer data)
{
  Ctl *ctl = data;

  OdLag *lag = od_session_get_lag (ctl->session);
  g_autofree char *why = NULL;

  if (ctl->caught_up && !ctl->one_command)
    {
      /* A sync caught up, and commands of this sign-in still to send (a
       * server that keeps refusing them for now: a rate limit, a failing
       * store): it ends within its time all the same. */
      guint n = od_outbox_count_pending (od_session_get_outbox (ctl->session));

      why = g_strdup_printf ("caught up, but %u command%s of the outbox %s not settled", n,
                             n == 1 ? "" : "s", n == 1 ? "is" : "are");
    }
  else if (od_lag_get_last_error (lag) != NULL)
    why = tty_text (od_lag_get_last_error (lag));
  else if (ctl->submit_id != 0)
    {
      /* Caught up or not, what was waited for is the command. */
      g_autoptr(OdPendingCommand) c = od_outbox_get (od_session_get_outbox (ctl->session),
                                                     ctl->submit_id, NULL);

      why = g_strdup_printf ("command %" G_GINT64_FORMAT " is still %s", ctl->submit_id,
                             c != NULL ? od_command_state_name (c->state) : "unknown");
    }
  else if (ctl->one_command)
    why = g_strdup ("the command is not queued yet");
  else
    why = g_strdup ("not caught up");
  g_printerr ("orderdeskctl: gave up after %u s: %s\n", ctl->timeout, why);
  ctl->exit_code = EXIT_UNREACHABLE;
  ctl_quit (ctl);
  return G_SOURCE_REMOVE;
}

/* --follow runs until it is stopped: that is its normal end (0).  A
 * one-shot command stopped before it is done did not succeed: it exits
 * 128 + the signal, as a shell reports a process the signal ended. */
static void
signal_quit (Ctl *ctl,
             int  signum)
{
  if (!ctl->follow && ctl->exit_code == EXIT_OK)
    ctl->exit_code = 128 + signum;
  ctl_quit (ctl);
}

static gboolean
on_sigint (gpointer data)
{
  signal_quit (data, SIGINT);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigterm (gpointer data)
{
  signal_quit (data, SIGTERM);
  return G_SOURCE_CONTINUE;
}

/* The commands that wait in the main loop (sync, submit, outbox actions,
 * verify) end through it on SIGINT or SIGTERM, so that the cache is
 * closed in order.  The others (status, orders, export) keep the signals'
 * default: Ctrl+C stops a long export at once, where a handler would
 * only have been looked at once it was over.  A second signal while the
 * cache closes ends the process, as after a kill. */
static void
run_loop (Ctl *ctl)
{
  guint sigint = g_unix_signal_add (SIGINT, on_sigint, ctl);
  guint sigterm = g_unix_signal_add (SIGTERM, on_sigterm, ctl);

  while (!ctl->done)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (sigint);
  g_source_remove (sigterm);
}

/* The cache could not commit (disk full, I/O error).  A one-shot sync
 * fails at once with the cause; --follow keeps going, as the sync engine
 * retries after a pause. */
static void
on_write_failed (OdCache *cache,
                 GError  *error,
                 Ctl     *ctl)
{
  g_autofree char *why = tty_text (error ? error->message : "write failed");

  g_printerr ("orderdeskctl: cache: %s\n", why);
  if (ctl->follow)
    return;
  ctl->exit_code = EXIT_FAILURE_;
  ctl_quit (ctl);
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
  ctl_quit (ctl);
}

static void
start_online (Ctl *ctl)
{
  OdOutbox *outbox = od_session_get_outbox (ctl->session);

  if (ctl->trust != NULL)
    od_session_set_tls_database (ctl->session, ctl->trust);
  od_session_sign_in (ctl->session, ctl->token);
  g_signal_connect (od_session_get_sync_engine (ctl->session), "caught-up",
                    G_CALLBACK (on_caught_up), ctl);
  g_signal_connect (od_session_get_lag (ctl->session), "notify::state",
                    G_CALLBACK (on_lag_state), ctl);
  g_signal_connect (ctl->cache, "applied", G_CALLBACK (on_applied), ctl);
  g_signal_connect (ctl->cache, "write-failed", G_CALLBACK (on_write_failed), ctl);
  g_signal_connect (ctl->cache, "outbox-changed", G_CALLBACK (on_outbox_changed), ctl);
  g_signal_connect (outbox, "command-changed", G_CALLBACK (on_command_changed), ctl);
  g_signal_connect (outbox, "sign-in-needed", G_CALLBACK (on_outbox_sign_in), ctl);
  if (ctl->timeout > 0 && !ctl->follow)
    g_timeout_add_seconds (ctl->timeout, on_timeout, ctl);
  od_session_connect (ctl->session);
}

static int
cmd_sync (Ctl   *ctl,
          int    argc,
          char **argv)
{
  ctl->follow = opt.follow;
  if (!open_cache (ctl, TRUE))
    return ctl->exit_code;
  start_online (ctl);
  run_loop (ctl);
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
  /* Not printf: "%.3f" writes a decimal comma in de_DE and other
   * locales, which is not JSON. */
  if (od_pending_command_latency_ms (c) >= 0)
    {
      char number[G_ASCII_DTOSTR_BUF_SIZE];

      g_ascii_formatd (number, sizeof number, "%.3f", od_pending_command_latency_ms (c));
      g_string_append_printf (out, ",\"latency_ms\":%s", number);
    }
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
              g_autofree char *code = tty_text (c->code ? c->code : "?");
              g_autofree char *detail = tty_text (c->detail);

              g_printerr ("orderdeskctl: rejected (%s): %s\n", code, detail);
              ctl->exit_code = EXIT_REJECTED;
            }
        }
      ctl_quit (ctl);
    }
}

/* A command refused before it was stored is invalid, whatever the
 * refusal (malformed, a field's rule, too large); any other failure (the
 * cache) is an error. */
static int
submit_exit_code (const GError *error)
{
  if (error->domain != OD_COMMAND_ERROR)
    return EXIT_FAILURE_;
  switch ((OdCommandError) error->code)
    {
    case OD_COMMAND_ERROR_MALFORMED:
    case OD_COMMAND_ERROR_INVALID:
    case OD_COMMAND_ERROR_TOO_LARGE:
      return EXIT_INVALID;
    default:
      return EXIT_FAILURE_;
    }
}

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  Ctl *ctl = data;
  g_autoptr(GError) error = NULL;
  OdOutbox *outbox = od_session_get_outbox (ctl->session);
  gint64 id = od_session_submit_finish (OD_SESSION (source), result, &error);

  if (id < 0)
    {
      g_autofree char *why = tty_text (error->message);

      g_printerr ("orderdeskctl: %s\n", why);
      ctl->exit_code = submit_exit_code (error);
      ctl_quit (ctl);
      return;
    }
  ctl->submit_id = id;
  /* It may have been answered before we learned its id. */
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, id, NULL);

    if (c != NULL && c->state != OD_COMMAND_STATE_QUEUED && c->state != OD_COMMAND_STATE_SENT)
      on_command_changed (outbox, id, c->state, ctl);
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

  ctl->no_wait = opt.no_wait;
  if (argc < 2)
    return usage_error ("submit: FILE or - is needed");
  file = argv[1];
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
  ctl->one_command = TRUE;
  start_online (ctl);
  od_session_submit_json_async (ctl->session, body, NULL, submitted, ctl);
  run_loop (ctl);
  return ctl->exit_code;
}

/* ------------------------------------------------------------------ */
/* status                                                              */

static int
cmd_status (Ctl   *ctl,
            int    argc,
            char **argv)
{
  gboolean json = opt.json;
  OdSyncState st = { 0 };
  gint64 counts[OD_STATUS_N];
  g_autoptr(GError) error = NULL;
  gint64 behind, now = g_get_real_time ();
  gint64 inconsistent;
  double seconds_behind = 0;
  guint pending;

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
  /* No identity: every unanswered command counts, whoever queued it. */
  pending = od_session_get_pending_commands (ctl->session);
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
      char seconds[G_ASCII_DTOSTR_BUF_SIZE];

      /* Not printf's %.1f: it follows LC_NUMERIC ("230,1" in de_DE). */
      g_ascii_formatd (seconds, sizeof seconds, "%.1f",
                       st.last_contact_at ? seconds_behind : -1.0);
      g_string_append_printf (out,
                              "\"applied_position\":%" G_GINT64_FORMAT
                              ",\"known_head\":%" G_GINT64_FORMAT
                              ",\"events_behind\":%" G_GINT64_FORMAT
                              ",\"seconds_since_contact\":%s,",
                              st.applied_position, st.known_head, behind, seconds);
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
      g_string_append_printf (out, ",\"orders\":%" G_GINT64_FORMAT ",\"status_counts\":{",
                              counts[0]);
      for (guint i = OD_STATUS_NONE + 1; i < OD_STATUS_N; i++)
        {
          if (i > OD_STATUS_NONE + 1)
            g_string_append_c (out, ',');
          od_json_append_string (out, od_order_status_name (i));
          g_string_append_printf (out, ":%" G_GINT64_FORMAT, counts[i]);
        }
      g_string_append_printf (out, "},\"inconsistent_orders\":%" G_GINT64_FORMAT
                              ",\"pending_commands\":%u}",
                              inconsistent, pending);
      g_print ("%s\n", out->str);
    }
  else
    {
      g_autofree char *contact = st.last_contact_at ? od_timestamp_format (st.last_contact_at)
                                                    : g_strdup ("never");
      g_autofree char *last_event = st.last_event_at ? od_timestamp_format (st.last_event_at)
                                                     : g_strdup ("none");
      g_autofree char *cache_path = tty_text (ctl->cache_path);
      g_autofree char *server_url = tty_text (st.server_url ? st.server_url : "(never synced)");

      g_print ("cache:            %s\n", cache_path);
      g_print ("server:           %s\n", server_url);
      g_print ("applied position: %" G_GINT64_FORMAT "\n", st.applied_position);
      g_print ("known head:       %" G_GINT64_FORMAT " (%" G_GINT64_FORMAT " behind)\n",
               st.known_head, behind);
      g_print ("last contact:     %s\n", contact);
      g_print ("last event:       %s\n", last_event);
      g_autoptr(GString) by_status = g_string_new (NULL);

      for (guint i = OD_STATUS_NONE + 1; i < OD_STATUS_N; i++)
        g_string_append_printf (by_status, "%s%s %" G_GINT64_FORMAT,
                                i > OD_STATUS_NONE + 1 ? ", " : "", od_order_status_name (i),
                                counts[i]);
      g_print ("orders:           %" G_GINT64_FORMAT " (%s)\n", counts[0], by_status->str);
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

/* --status, --search, --sort, --asc and --desc into `q`; a usage error
 * (with *rc set) when a value is unknown. */
static gboolean
parse_query_options (OdOrderQuery *q,
                     int          *rc)
{
  q->sort = OD_ORDER_SORT_UPDATED;
  q->descending = TRUE;
  q->status = OD_STATUS_NONE;
  q->search = opt.search;
  if (opt.status != NULL && !od_order_status_from_name (opt.status, &q->status))
    {
      g_autoptr(GString) known = g_string_new (NULL);

      /* From the status table, so a new status is listed by itself. */
      for (guint i = OD_STATUS_NONE + 1; i < OD_STATUS_N; i++)
        g_string_append_printf (known, "%s%s", i > OD_STATUS_NONE + 1 ? ", " : "",
                                od_order_status_name (i));
      *rc = usage_error ("unknown status %s (%s)", opt.status, known->str);
      return FALSE;
    }
  if (opt.sort == NULL || g_str_equal (opt.sort, "updated"))
    q->sort = OD_ORDER_SORT_UPDATED;
  else if (g_str_equal (opt.sort, "created"))
    q->sort = OD_ORDER_SORT_CREATED;
  else if (g_str_equal (opt.sort, "total"))
    q->sort = OD_ORDER_SORT_TOTAL;
  else if (g_str_equal (opt.sort, "customer"))
    q->sort = OD_ORDER_SORT_CUSTOMER, q->descending = FALSE;
  else
    {
      *rc = usage_error ("unknown sort %s (updated, created, total, customer)", opt.sort);
      return FALSE;
    }
  if (opt.asc && opt.desc)
    {
      *rc = usage_error ("--asc and --desc exclude each other");
      return FALSE;
    }
  if (opt.asc)
    q->descending = FALSE;
  else if (opt.desc)
    q->descending = TRUE;
  return TRUE;
}

enum
{
  COL_ORDER,
  COL_STATUS,
  COL_CUSTOMER,
  COL_ITEMS,
  COL_TOTAL,
  COL_CURRENCY,
  COL_UPDATED,
  N_COLS
};

/* Longer customer names are cut, so that a row fits a terminal. */
#define CUSTOMER_MAX_WIDTH 32

/* The orders as a table for people: a header line, columns padded to the
 * terminal width of their text (not its bytes: "Müller" and "山田" take 6
 * and 4 columns), customer names cut at CUSTOMER_MAX_WIDTH columns, and
 * every cell made safe for the terminal. */
static void
print_orders_table (GPtrArray *rows)
{
  static const char *headers[N_COLS] = {
    "ORDER", "STATUS", "CUSTOMER", "ITEMS", "TOTAL", "CUR", "UPDATED"
  };
  static const gboolean right[N_COLS] = { FALSE, FALSE, FALSE, TRUE, TRUE, FALSE, FALSE };
  g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GString) line = g_string_new (NULL);
  guint widths[N_COLS];

  for (guint c = 0; c < N_COLS; c++)
    widths[c] = text_width (headers[c]);
  for (guint i = 0; i < rows->len; i++)
    {
      OdOrderRow *r = g_ptr_array_index (rows, i);
      g_autofree char *customer = tty_text (r->customer_name);
      gint64 cents = r->total_cents;

      g_ptr_array_add (cells, tty_text (r->order_id));
      g_ptr_array_add (cells, g_strdup (od_order_status_name (r->status)));
      g_ptr_array_add (cells, text_truncate (customer, CUSTOMER_MAX_WIDTH));
      g_ptr_array_add (cells, g_strdup_printf ("%" G_GINT64_FORMAT, r->item_count));
      /* Integer arithmetic: exact, and the same in every locale. */
      g_ptr_array_add (cells, g_strdup_printf ("%s%" G_GINT64_FORMAT ".%02d", cents < 0 ? "-" : "",
                                               ABS (cents) / 100, (int) (ABS (cents) % 100)));
      g_ptr_array_add (cells, tty_text (r->currency));
      g_ptr_array_add (cells, tty_text (r->updated_at));
      for (guint c = 0; c < N_COLS; c++)
        widths[c] = MAX (widths[c], text_width (g_ptr_array_index (cells, i * N_COLS + c)));
    }
  for (guint i = 0; i <= rows->len; i++)
    {
      gboolean row_inconsistent = i > 0 && ((OdOrderRow *) g_ptr_array_index (rows, i - 1))->inconsistent;

      g_string_truncate (line, 0);
      for (guint c = 0; c < N_COLS; c++)
        {
          const char *text = i == 0 ? headers[c] : g_ptr_array_index (cells, (i - 1) * N_COLS + c);

          if (c > 0)
            g_string_append (line, "  ");
          /* No spaces at the end of a line. */
          if (c == N_COLS - 1 && !row_inconsistent)
            g_string_append (line, text);
          else
            append_padded (line, text, widths[c], right[c]);
        }
      /* An order whose history breaks the protocol, shown as of its last
       * good event (see docs/protocol.md). */
      if (row_inconsistent)
        g_string_append (line, "  INCONSISTENT");
      g_print ("%s\n", line->str);
    }
}

static int
cmd_orders (Ctl   *ctl,
            int    argc,
            char **argv)
{
  OdOrderQuery q = { 0 };
  guint64 limit = 50;
  g_autoptr(GPtrArray) rows = NULL;
  g_autoptr(GError) error = NULL;
  int rc = 0;

  if (opt.limit != NULL
      && !g_ascii_string_to_unsigned (opt.limit, 10, 1, 1000000, &limit, NULL))
    return usage_error ("--limit needs a number from 1 to 1000000");
  if (!parse_query_options (&q, &rc))
    return rc;
  if (!open_cache (ctl, FALSE))
    return ctl->exit_code;
  rows = od_query_orders (ctl->cache, &q, NULL, limit, &error);
  if (rows == NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  if (!opt.json)
    {
      print_orders_table (rows);
      return EXIT_OK;
    }
  for (guint i = 0; i < rows->len; i++)
    {
      OdOrderRow *r = g_ptr_array_index (rows, i);
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
      g_string_append_printf (out, ",\"inconsistent\":%s}", r->inconsistent ? "true" : "false");
      g_print ("%s\n", out->str);
    }
  return EXIT_OK;
}

static int
cmd_export (Ctl   *ctl,
            int    argc,
            char **argv)
{
  OdOrderQuery q = { 0 };
  const char *file = opt.csv;
  g_autoptr(GOutputStream) out = NULL;
  g_autoptr(GError) error = NULL;
  int rc = 0;

  if (file == NULL)
    return usage_error ("export: --csv FILE is needed");
  if (!parse_query_options (&q, &rc))
    return rc;
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
  if (!od_query_export_csv_full (ctl->cache, &q,
                                 opt.provenance ? OD_EXPORT_PROVENANCE : OD_EXPORT_NONE,
                                 out, NULL, &error)
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
      ctl_quit (ctl);
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
      ctl->one_command = TRUE;
      start_online (ctl);
      ctl->submit_id = id;
      od_outbox_send_as_me_async (od_session_get_outbox (ctl->session), id, NULL,
                                  outbox_action_done, ctl);
    }
  else
    {
      od_session_set_identity (ctl->session, ctl->token);
      ctl->submit_id = -id;
      od_outbox_discard_async (od_session_get_outbox (ctl->session), id, NULL,
                               outbox_action_done, ctl);
    }
  run_loop (ctl);
  return ctl->exit_code;
}

static int
cmd_outbox (Ctl   *ctl,
            int    argc,
            char **argv)
{
  gboolean all = opt.all;
  g_autoptr(GPtrArray) list = NULL;
  g_autoptr(GError) error = NULL;

  if (argc >= 2)
    {
      if (g_str_equal (argv[1], "send-as-me") || g_str_equal (argv[1], "discard"))
        return cmd_outbox_action (ctl, argc, argv);
      return usage_error ("outbox: unknown action %s (send-as-me or discard)", argv[1]);
    }
  if (!open_cache (ctl, FALSE))
    return ctl->exit_code;
  /* Held commands are marked as such for this sign-in. */
  od_session_set_identity (ctl->session, ctl->token);
  list = od_outbox_list (od_session_get_outbox (ctl->session), all, all ? 1000 : 0, &error);
  if (list == NULL)
    {
      g_printerr ("orderdeskctl: %s\n", error->message);
      return EXIT_FAILURE_;
    }
  for (guint i = 0; i < list->len; i++)
    print_command (g_ptr_array_index (list, i));
  return EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* verify                                                              */

static void
print_positions (GString *out,
                 GArray  *positions)
{
  for (guint i = 0; i < positions->len && i < 20; i++)
    g_string_append_printf (out, "%s%" G_GINT64_FORMAT, i ? ", " : "",
                            g_array_index (positions, gint64, i));
  if (positions->len > 20)
    g_string_append_printf (out, " and %u more", positions->len - 20);
}

typedef struct
{
  Ctl            *ctl;
  OdVerifyReport *report;
  GError         *error;
} VerifyRun;

static void
verify_done (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  VerifyRun *run = user_data;

  run->report = od_verify_run_finish (res, &run->error);
  ctl_quit (run->ctl);
}

static int
cmd_verify (Ctl   *ctl,
            int    argc,
            char **argv)
{
  g_autoptr(OdVerifyReport) report = NULL;
  g_autoptr(GError) error = NULL;
  VerifyRun run = { ctl, NULL, NULL };
  gint64 after = 0;
  int code;

  if (opt.after != NULL
      && !g_ascii_string_to_signed (opt.after, 10, 0, G_MAXINT64, &after, NULL))
    return usage_error ("--after must be a position (an integer >= 0)");
  if (!open_cache (ctl, TRUE))
    return ctl->exit_code;
  /* In a thread: its repairs complete through this thread's main loop. */
  od_verify_run_async (ctl->cache, ctl->server, ctl->token, ctl->trust, after, opt.repair, NULL,
                       verify_done, &run);
  run_loop (ctl);
  report = run.report;
  error = run.error;
  if (report == NULL)
    {
      g_autofree char *why = tty_text (error->message);

      if (g_error_matches (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_FOREIGN_LOG))
        code = EXIT_FOREIGN;
      else if (g_error_matches (error, OD_VERIFY_ERROR, OD_VERIFY_ERROR_SIGN_IN))
        code = EXIT_SIGN_IN;
      else if (error->domain == G_IO_ERROR || error->domain == G_RESOLVER_ERROR
               || error->domain == G_TLS_ERROR)
        code = EXIT_UNREACHABLE;
      else
        code = EXIT_FAILURE_;
      if (opt.json)
        {
          g_autoptr(GString) out = g_string_new ("{\"result\":");

          od_json_append_string (out, code == EXIT_FOREIGN ? "foreign" : "error");
          g_string_append (out, ",\"error\":");
          od_json_append_string (out, error->message);
          g_string_append (out, "}\n");
          fputs (out->str, stdout);
        }
      g_printerr ("orderdeskctl: verify: %s\n", why);
      return code;
    }
  code = od_verify_report_clean (report) || report->repaired ? EXIT_OK : EXIT_DIFFERS;
  if (opt.json)
    {
      g_autofree char *json = od_verify_report_to_json (report);

      /* The report, with the verdict first. */
      printf ("{\"result\":\"%s\",%s\n",
              od_verify_report_clean (report) ? "clean" : report->repaired ? "repaired" : "differs",
              json + 1);
      return code;
    }
  printf ("verified positions %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT ": %" G_GINT64_FORMAT
          " events, %" G_GINT64_FORMAT " orders (%u requests)\n",
          report->after, report->upto, report->events_checked, report->orders_checked,
          report->requests);
  if (od_verify_report_clean (report))
    {
      printf ("clean: the cache is the server's log and its fold\n");
      return code;
    }
  if (report->positions->len > 0)
    {
      g_autoptr(GString) out = g_string_new (NULL);

      print_positions (out, report->positions);
      printf ("events that differ from the server's: %u (positions %s)\n",
              report->positions->len, out->str);
    }
  for (guint i = 0; i < report->orders->len && i < 50; i++)
    {
      g_autofree char *id = tty_text (g_ptr_array_index (report->orders, i));

      printf ("order whose rows differ from the fold of its events: %s\n", id);
    }
  if (report->orders->len > 50)
    printf ("… and %u more orders\n", report->orders->len - 50);
  if (report->counts_differed)
    printf ("status counts differ from the orders\n");
  printf (report->repaired ? "repaired\n" : "not repaired (run with --repair)\n");
  return code;
}

/* ------------------------------------------------------------------ */
/* command line                                                        */

typedef struct
{
  const char         *name;
  const char         *operands;   /* after the name in the usage line */
  guint               min_operands;
  guint               max_operands;
  const char         *brief;      /* for the list of commands */
  const char         *summary;
  const GOptionEntry *entries;
  int               (*run) (Ctl *ctl, int argc, char **argv);
} CtlCommand;

static const CtlCommand commands[] = {
  { "sync", "", 0, 0, "catch up with the server, send queued commands",
    "Catch up with the server's event log and send queued commands; exit 0 once\n"
    "caught up and the outbox is settled (--follow: keep following).",
    sync_entries, cmd_sync },
  { "status", "", 0, 0, "positions, lag, counts, outbox (from the cache)",
    "Positions, lag, counts and outbox, from the cache only (no network).",
    status_entries, cmd_status },
  { "submit", "FILE|-", 1, 1, "submit one command and wait for its outcome",
    "Submit one command (its JSON as in docs/protocol.md, read from FILE or stdin)\n"
    "through the outbox; wait until it is visible in the cache (--no-wait: until the\n"
    "server answered) and print the outcome as JSON.",
    submit_entries, cmd_submit },
  { "orders", "", 0, 0, "list cached orders",
    "List cached orders as a table (--json: one JSON object per line).",
    orders_entries, cmd_orders },
  { "export", "", 0, 0, "write cached orders as CSV",
    "Write the cached orders of a view as CSV (RFC 4180, CRLF); text a spreadsheet\n"
    "would run as a formula is quoted with a ' in front.",
    export_entries, cmd_export },
  { "outbox", "[send-as-me|discard ID]", 0, 2, "list the outbox, send or discard held commands",
    "List the outbox as JSON lines: commands queued, sent, accepted (--all: also final);\n"
    "commands held because another sign-in queued them say \"held\":true.\n"
    "'outbox send-as-me ID' sends a held command under this sign-in (only one never\n"
    "sent); 'outbox discard ID' discards a queued or held command.",
    outbox_entries, cmd_outbox },
  { "verify", "", 0, 0, "check the cache against the server, repair it",
    "Check the cache against the server: its events against the server's (digests\n"
    "of ranges, bisected down to the events that differ) and its orders against the\n"
    "fold of its events; print what differs (--json: one JSON object).  --repair\n"
    "fetches differing events again and folds the orders again.  A cache of another\n"
    "server's log is refused (exit 8), never repaired.",
    verify_entries, cmd_verify },
};

static const CtlCommand *
find_command (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      return &commands[i];
  return NULL;
}

/* Whether option `arg` (as written on the command line, no "=value")
 * takes a value in any command: then the next argument is its value, not
 * the command. */
static gboolean
option_takes_value (const char *arg)
{
  const GOptionEntry *tables[G_N_ELEMENTS (commands) + 1];

  tables[0] = global_entries;
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    tables[i + 1] = commands[i].entries;
  for (guint t = 0; t < G_N_ELEMENTS (tables); t++)
    for (const GOptionEntry *e = tables[t]; e->long_name != NULL; e++)
      {
        if (e->arg == G_OPTION_ARG_NONE)
          continue;
        if ((arg[1] == '-' && g_str_equal (arg + 2, e->long_name))
            || (arg[1] != '-' && e->short_name != 0 && arg[1] == e->short_name && arg[2] == '\0'))
          return TRUE;
      }
  return FALSE;
}

/* The index in argv of the command's name, or -1: the first argument
 * that is neither an option nor an option's value. */
static int
find_command_index (int    argc,
                    char **argv)
{
  for (int i = 1; i < argc; i++)
    {
      const char *a = argv[i];

      if (g_str_equal (a, "--"))
        return i + 1 < argc ? i + 1 : -1;
      if (a[0] != '-' || a[1] == '\0')
        return i;
      if (strchr (a, '=') == NULL && option_takes_value (a))
        i++;
    }
  return -1;
}

static GOptionContext *
make_context (const CtlCommand *cmd)
{
  g_autofree char *parameter = cmd == NULL ? g_strdup ("COMMAND [ARG…]")
                                           : g_strdup_printf ("%s%s%s", cmd->name,
                                                              cmd->operands[0] ? " " : "",
                                                              cmd->operands);
  GOptionContext *context = g_option_context_new (parameter);
  GOptionGroup *global = g_option_group_new ("global", "Global options (before or after the "
                                             "command):", "Show the global options", NULL, NULL);

  /* Our own --help: the exit status and the output stay ours.  Groups
   * rather than main entries, as they get titles: the command's first. */
  g_option_context_set_help_enabled (context, FALSE);
  if (cmd != NULL)
    {
      g_autofree char *title = g_strdup_printf ("Options of %s:", cmd->name);
      GOptionGroup *group = g_option_group_new (cmd->name, title, "Show the command's options",
                                                NULL, NULL);

      g_option_group_add_entries (group, cmd->entries);
      g_option_context_add_group (context, group);
      g_option_context_set_summary (context, cmd->summary);
    }
  g_option_context_set_description (context, exit_status_text);
  g_option_group_add_entries (global, global_entries);
  g_option_context_add_group (context, global);
  if (cmd == NULL)
    {
      g_autoptr(GString) summary = g_string_new ("The OrderDesk console core on the command "
                                                 "line.\n\nCommands:");

      for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
        g_string_append_printf (summary, "\n  %-8s %s", commands[i].name, commands[i].brief);
      g_string_append (summary, "\n\nRun 'orderdeskctl COMMAND --help' for a command's options.");
      g_option_context_set_summary (context, summary->str);
    }
  return context;
}

static void
print_help (const CtlCommand *cmd)
{
  g_autoptr(GOptionContext) context = make_context (cmd);
  g_autofree char *help = g_option_context_get_help (context, FALSE, NULL);

  fputs (help, stdout);
}

static void
clear_options (void)
{
  g_clear_pointer (&opt.server, g_free);
  g_clear_pointer (&opt.token_file, g_free);
  g_clear_pointer (&opt.cache, g_free);
  g_clear_pointer (&opt.timeout, g_free);
  g_clear_pointer (&opt.ca_file, g_free);
  g_clear_pointer (&opt.status, g_free);
  g_clear_pointer (&opt.search, g_free);
  g_clear_pointer (&opt.sort, g_free);
  g_clear_pointer (&opt.limit, g_free);
  g_clear_pointer (&opt.csv, g_free);
}

/* Parses the command line into opt: the global options and those of the
 * command, in any order and in either form (--opt value, --opt=value).
 * Returns -1 to go on, else the exit status; *cmd is the command (NULL
 * for none) and *operands what is left after it (a new vector). */
static int
parse_command_line (int                argc,
                    char             **argv,
                    const CtlCommand **cmd,
                    char            ***operands)
{
  int index = find_command_index (argc, argv);
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) strv = NULL;
  g_autoptr(GError) error = NULL;
  gboolean help_command = FALSE;
  guint n;

  *cmd = NULL;
  *operands = NULL;
  if (index > 0)
    {
      help_command = g_str_equal (argv[index], "help");
      *cmd = help_command ? NULL : find_command (argv[index]);
      if (*cmd == NULL && !help_command)
        return usage_error ("unknown command %s", argv[index]);
      usage_command = *cmd ? (*cmd)->name : NULL;
    }
  /* "orderdeskctl help [COMMAND]" is "orderdeskctl [COMMAND] --help". */
  if (help_command)
    {
      if (index + 1 < argc && (*cmd = find_command (argv[index + 1])) == NULL)
        return usage_error ("unknown command %s", argv[index + 1]);
      print_help (*cmd);
      return EXIT_OK;
    }
  for (int i = 0; i < argc; i++)
    if (i != index)
      g_ptr_array_add (args, g_strdup (argv[i]));
  g_ptr_array_add (args, NULL);
  strv = (GStrv) g_ptr_array_steal (args, NULL);

  context = make_context (*cmd);
  if (!g_option_context_parse_strv (context, &strv, &error))
    return usage_error ("%s", error->message);
  if (opt.help)
    {
      print_help (*cmd);
      return EXIT_OK;
    }
  if (opt.version)
    {
      g_print ("orderdeskctl %s\n", OD_VERSION);
      return EXIT_OK;
    }
  if (*cmd == NULL)
    return usage_error ("no command given");

  /* What is left: the program's name, then the operands, "--" dropped. */
  *operands = g_new0 (char *, g_strv_length (strv) + 1);
  (*operands)[0] = g_strdup ((*cmd)->name);
  n = 1;
  for (guint i = 1; strv[i] != NULL; i++)
    if (!g_str_equal (strv[i], "--") || n > 1)
      (*operands)[n++] = g_strdup (strv[i]);
  if (n - 1 > (*cmd)->max_operands)
    return usage_error ("%s: unexpected argument %s", (*cmd)->name,
                        (*operands)[(*cmd)->max_operands + 1]);
  if (n - 1 < (*cmd)->min_operands)
    return usage_error ("%s: %s is needed", (*cmd)->name, (*cmd)->operands);
  return -1;
}

int
main (int    argc,
      char **argv)
{
  Ctl ctl = { 0 };
  const CtlCommand *cmd = NULL;
  g_auto(GStrv) operands = NULL;
  int rc;

  setlocale (LC_ALL, "");
  g_set_prgname ("orderdeskctl");

  rc = parse_command_line (argc, argv, &cmd, &operands);
  if (rc >= 0)
    {
      clear_options ();
      return rc;
    }

  ctl.timeout = 60;
  ctl.quiet = opt.quiet;
  ctl.server = g_strdup (opt.server ? opt.server : g_getenv ("ORDERDESK_SERVER"));
  ctl.cache_path = g_strdup (opt.cache);
  if (opt.timeout != NULL)
    {
      guint64 t;

      if (!g_ascii_string_to_unsigned (opt.timeout, 10, 0, 86400, &t, NULL))
        {
          clear_options ();
          return usage_error ("--timeout needs a number of seconds (0 to 86400)");
        }
      ctl.timeout = t;
    }
  if (opt.ca_file != NULL)
    {
      g_autoptr(GError) error = NULL;

      ctl.trust = g_tls_file_database_new (opt.ca_file, &error);
      if (ctl.trust == NULL)
        {
          g_printerr ("orderdeskctl: --ca-file %s: %s\n", opt.ca_file, error->message);
          clear_options ();
          return EXIT_FAILURE_;
        }
    }
  /* While the token is in memory no core dump may carry it (nor may
   * another process of the user read it through /proc or ptrace). */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (opt.token_file != NULL)
    {
      g_autoptr(GError) error = NULL;

      ctl.token = read_token_file (opt.token_file, &error);
      if (ctl.token == NULL)
        g_printerr ("orderdeskctl: %s\n", error->message);
    }
  else if (g_getenv ("ORDERDESK_TOKEN") != NULL)
    ctl.token = g_strdup (g_getenv ("ORDERDESK_TOKEN"));

  if (opt.token_file != NULL && ctl.token == NULL)
    rc = EXIT_FAILURE_;
  else
    rc = cmd->run (&ctl, g_strv_length (operands), operands);

  if (ctl.session != NULL)
    od_session_close (ctl.session);
  g_clear_object (&ctl.session);
  g_free (ctl.server);
  if (ctl.token != NULL)
    memset (ctl.token, 0, strlen (ctl.token));
  g_free (ctl.token);
  g_free (ctl.cache_path);
  g_clear_object (&ctl.trust);
  clear_options ();
  /* The token is gone: dumpable again, which LeakSanitizer needs for its
   * check at exit (it stops the process with ptrace). */
  prctl (PR_SET_DUMPABLE, 1, 0, 0, 0);
  return rc;
}
