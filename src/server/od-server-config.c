/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-server-config.h"

#include <gio/gio.h>
#include <string.h>

#define CONFIG_GROUP "server"

typedef enum
{
  TYPE_STRING,
  TYPE_FILENAME,
  TYPE_BOOL,
  TYPE_INT,
  TYPE_DOUBLE,
  TYPE_RATE,    /* RATE[:BURST] into rate_limit and rate_burst */
} OptionType;

typedef struct
{
  const char *name;
  OptionType  type;
  gsize       offset;
  const char *fallback;   /* the default, parsed like any other value */
  double      min;
  double      max;
  const char *arg;
  const char *help;
} Option;

#define FIELD(f) G_STRUCT_OFFSET (OdServerConfig, f)

/* One table for the flags, the environment and the file, so that the
 * three cannot drift apart. */
static const Option options[] = {
  { "listen", TYPE_STRING, FIELD (listen), "127.0.0.1:8080", 0, 0, "HOST:PORT",
    "Address to listen on (default 127.0.0.1:8080; port 0 picks one)" },
  { "store", TYPE_STRING, FIELD (store), NULL, 0, 0, "URI",
    "Event store: sqlite:PATH or postgresql://…" },
  { "tokens", TYPE_FILENAME, FIELD (tokens), NULL, 0, 0, "FILE",
    "JSON file of {name, role, token_sha256}" },
  { "store-wait", TYPE_INT, FIELD (store_wait), "30", 0, 86400, "S",
    "Seconds to keep retrying an unreachable store at start (default 30)" },
  { "demo", TYPE_BOOL, FIELD (demo), "false", 0, 0, NULL,
    "Demo mode: demo tokens and about 1,000 sample orders (loopback only)" },
  { "demo-public", TYPE_BOOL, FIELD (demo_public), "false", 0, 0, NULL,
    "Allow --demo on a non-loopback address (its tokens are public)" },
  { "demo-orders", TYPE_INT, FIELD (demo_orders), "1000", 0, 10000000, "N",
    "Orders to seed an empty demo store with (default 1000)" },
  { "demo-traffic", TYPE_DOUBLE, FIELD (demo_traffic), "0", 0, 1e6, "RATE",
    "Issue RATE demo commands a second" },
  { "rate-limit", TYPE_RATE, FIELD (rate_limit), "1000:2000", 0, 0, "RATE[:BURST]",
    "Commands a second per token, with bursts (default 1000:2000; 0 turns it off)" },
  { "request-timeout", TYPE_INT, FIELD (request_timeout), "30", 1, 86400, "S",
    "Seconds a request may take to arrive (default 30)" },
  { "stall-timeout", TYPE_INT, FIELD (stall_timeout), "30", 1, 86400, "S",
    "Seconds a stream subscriber may read nothing before it is dropped (default 30)" },
  { "frame-blocks", TYPE_BOOL, FIELD (frame_blocks), "true", 0, 0, NULL,
    "Keep the stream frames in a SQLite store for fast replay (the file grows about "
    "twice as fast; default true)" },
  { "ready-file", TYPE_FILENAME, FIELD (ready_file), NULL, 0, 0, "FILE",
    "Write the base URL to FILE once listening" },
  { "tls-cert", TYPE_FILENAME, FIELD (tls_cert), NULL, 0, 0, "FILE", "PEM certificate for HTTPS" },
  { "tls-key", TYPE_FILENAME, FIELD (tls_key), NULL, 0, 0, "FILE", "PEM private key for HTTPS" },
  { "metrics-token", TYPE_STRING, FIELD (metrics_token), NULL, 0, 0, "TOKEN",
    "Bearer token GET /metrics requires (default: none needed)" },
};

static const Option *
find_option (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (options); i++)
    if (strcmp (options[i].name, name) == 0)
      return &options[i];
  return NULL;
}

static char *
env_name (const char *name)
{
  g_autofree char *upper = g_ascii_strup (name, -1);

  g_strdelimit (upper, "-", '_');
  return g_strconcat ("ORDERDESK_", upper, NULL);
}

OdServerConfig *
od_server_config_new (void)
{
  OdServerConfig *config = g_new0 (OdServerConfig, 1);

  config->sources = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  return config;
}

void
od_server_config_free (OdServerConfig *config)
{
  if (config == NULL)
    return;
  for (guint i = 0; i < G_N_ELEMENTS (options); i++)
    if (options[i].type == TYPE_STRING || options[i].type == TYPE_FILENAME)
      g_free (G_STRUCT_MEMBER (char *, config, options[i].offset));
  g_free (config->config_file);
  g_hash_table_unref (config->sources);
  g_free (config);
}

static gboolean
parse_rate (const char *text,
            double     *rate,
            double     *burst)
{
  g_auto(GStrv) parts = g_strsplit (text, ":", 2);
  char *end = NULL;

  *rate = g_ascii_strtod (parts[0], &end);
  if (end == parts[0] || *end != '\0' || !(*rate >= 0) || *rate > 1e9)
    return FALSE;
  *burst = MAX (*rate * 2, 1);
  if (parts[1] != NULL)
    {
      *burst = g_ascii_strtod (parts[1], &end);
      if (end == parts[1] || *end != '\0' || !(*burst >= 1) || *burst > 1e9)
        return FALSE;
    }
  return TRUE;
}

/* where names the source for the error: "--flag", "environment variable
 * ORDERDESK_X" or "FILE:LINE". */
static gboolean
set_value (OdServerConfig  *config,
           const Option    *option,
           const char      *text,
           const char      *where,
           GError         **error)
{
  gpointer field = G_STRUCT_MEMBER_P (config, option->offset);

  switch (option->type)
    {
    case TYPE_STRING:
    case TYPE_FILENAME:
      if (*text == '\0')
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "%s: %s must not be empty", where, option->name);
          return FALSE;
        }
      g_free (*(char **) field);
      *(char **) field = g_strdup (text);
      return TRUE;

    case TYPE_BOOL:
      if (g_ascii_strcasecmp (text, "true") == 0 || g_ascii_strcasecmp (text, "yes") == 0
          || strcmp (text, "1") == 0)
        *(gboolean *) field = TRUE;
      else if (g_ascii_strcasecmp (text, "false") == 0 || g_ascii_strcasecmp (text, "no") == 0
               || strcmp (text, "0") == 0)
        *(gboolean *) field = FALSE;
      else
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "%s: %s wants true or false, not '%s'", where, option->name, text);
          return FALSE;
        }
      return TRUE;

    case TYPE_INT:
      {
        gint64 value;

        if (!g_ascii_string_to_signed (text, 10, (gint64) option->min, (gint64) option->max,
                                       &value, NULL))
          {
            g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                         "%s: %s wants a whole number from %.0f to %.0f, not '%s'", where,
                         option->name, option->min, option->max, text);
            return FALSE;
          }
        *(int *) field = (int) value;
        return TRUE;
      }

    case TYPE_DOUBLE:
      {
        char *end = NULL;
        double value = g_ascii_strtod (text, &end);

        if (end == text || *end != '\0' || !(value >= option->min) || value > option->max)
          {
            g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                         "%s: %s wants a number from %g to %g, not '%s'", where, option->name,
                         option->min, option->max, text);
            return FALSE;
          }
        *(double *) field = value;
        return TRUE;
      }

    case TYPE_RATE:
      if (!parse_rate (text, &config->rate_limit, &config->rate_burst))
        {
          g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                       "%s: %s wants RATE[:BURST] (e.g. 1000:2000), not '%s'", where,
                       option->name, text);
          return FALSE;
        }
      return TRUE;

    default:
      g_assert_not_reached ();
    }
}

/* Flags are only collected while argv is parsed; they are applied after
 * the file and the environment, whatever their order on the line. */
static gboolean
collect_flag (const char  *option_name,
              const char  *value,
              gpointer     data,
              GError     **error)
{
  GHashTable *flags = data;
  const char *name = option_name + 2;

  g_hash_table_insert (flags, g_strdup (name), g_strdup (value ? value : "true"));
  return TRUE;
}

/* GKeyFile reports neither the line of a syntax error nor that of a
 * key, so the file is read line by line here first, with the same rules
 * (blank lines and '#' comments skipped, whitespace around keys ignored),
 * and each key's line remembered. */
static gboolean
scan_file (const char  *path,
           const char  *contents,
           GHashTable  *key_lines,
           GError     **error)
{
  g_auto(GStrv) lines = g_strsplit (contents, "\n", -1);
  g_autofree char *group = NULL;

  for (guint i = 0; lines[i] != NULL; i++)
    {
      char *line = g_strstrip (lines[i]);
      guint number = i + 1;
      char *eq;

      if (*line == '\0' || *line == '#')
        continue;
      if (*line == '[')
        {
          gsize len = strlen (line);

          if (line[len - 1] != ']')
            {
              g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                           "%s:%u: a section header must end with ']'", path, number);
              return FALSE;
            }
          g_free (group);
          group = g_strndup (line + 1, len - 2);
          if (strcmp (group, CONFIG_GROUP) != 0)
            {
              g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                           "%s:%u: unknown section [%s]; settings go in [" CONFIG_GROUP "]",
                           path, number, group);
              return FALSE;
            }
          continue;
        }
      eq = strchr (line, '=');
      if (eq == NULL)
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                       "%s:%u: expected 'key = value', a [section] or a # comment", path, number);
          return FALSE;
        }
      *eq = '\0';
      g_strchomp (line);
      if (group == NULL)
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                       "%s:%u: '%s' comes before the [" CONFIG_GROUP "] section", path, number,
                       line);
          return FALSE;
        }
      if (find_option (line) == NULL)
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                       "%s:%u: unknown key '%s' (keys are the long options, e.g. listen, "
                       "store, tokens)", path, number, line);
          return FALSE;
        }
      if (g_hash_table_contains (key_lines, line))
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE,
                       "%s:%u: '%s' is already set on line %u", path, number, line,
                       GPOINTER_TO_UINT (g_hash_table_lookup (key_lines, line)));
          return FALSE;
        }
      g_hash_table_insert (key_lines, g_strdup (line), GUINT_TO_POINTER (number));
    }
  return TRUE;
}

static gboolean
load_file (OdServerConfig  *config,
           GHashTable      *values,
           GError         **error)
{
  g_autoptr(GHashTable) key_lines = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GKeyFile) file = g_key_file_new ();
  g_autoptr(GError) local_error = NULL;
  g_autofree char *contents = NULL;
  const char *path = config->config_file;
  GHashTableIter iter;
  gpointer key, line;
  gsize len;

  if (!g_file_get_contents (path, &contents, &len, &local_error))
    {
      g_set_error (error, G_FILE_ERROR, local_error->code, "config file: %s",
                   local_error->message);
      return FALSE;
    }
  if (!g_utf8_validate (contents, len, NULL))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_UNKNOWN_ENCODING,
                   "%s: not UTF-8 text", path);
      return FALSE;
    }
  if (!scan_file (path, contents, key_lines, error))
    return FALSE;
  if (!g_key_file_load_from_data (file, contents, len, G_KEY_FILE_NONE, &local_error))
    {
      g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s: %s", path,
                   local_error->message);
      return FALSE;
    }

  g_hash_table_iter_init (&iter, key_lines);
  while (g_hash_table_iter_next (&iter, &key, &line))
    {
      g_autofree char *value = g_key_file_get_string (file, CONFIG_GROUP, key, &local_error);

      if (value == NULL)
        {
          g_set_error (error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "%s:%u: %s",
                       path, GPOINTER_TO_UINT (line), local_error->message);
          return FALSE;
        }
      g_hash_table_insert (values, g_strdup (key),
                           g_strdup_printf ("%u\n%s", GPOINTER_TO_UINT (line), value));
    }
  return TRUE;
}

gboolean
od_server_config_load (OdServerConfig  *config,
                       int             *argc,
                       char          ***argv,
                       GError         **error)
{
  g_autoptr(GHashTable) flags = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GHashTable) file_values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                             g_free);
  g_autoptr(GOptionContext) context = g_option_context_new ("— the OrderDesk write service");
  g_autoptr(GArray) entries = g_array_new (TRUE, TRUE, sizeof (GOptionEntry));
  GOptionGroup *group;
  const char *env_config;

  for (guint i = 0; i < G_N_ELEMENTS (options); i++)
    {
      /* A boolean flag alone is true; --flag=false is false. */
      GOptionEntry entry = { options[i].name, 0,
                             options[i].type == TYPE_BOOL ? G_OPTION_FLAG_OPTIONAL_ARG : 0,
                             G_OPTION_ARG_CALLBACK, (gpointer) collect_flag, options[i].help,
                             options[i].arg };

      if (options[i].type == TYPE_FILENAME)
        entry.flags |= G_OPTION_FLAG_FILENAME;
      g_array_append_val (entries, entry);
    }
  {
    GOptionEntry extra[] = {
      { "config", 0, G_OPTION_FLAG_FILENAME, G_OPTION_ARG_CALLBACK, (gpointer) collect_flag,
        "Read settings from FILE ([server] group, keys named as the long options)", "FILE" },
      { "print-config", 0, 0, G_OPTION_ARG_NONE, &config->print_config,
        "Print the settings in effect and where each comes from, then exit", NULL },
      { "version", 0, 0, G_OPTION_ARG_NONE, &config->show_version, "Print the version and exit",
        NULL },
    };

    g_array_append_vals (entries, extra, G_N_ELEMENTS (extra));
  }

  group = g_option_group_new ("server", "Server options", "Server options", flags, NULL);
  g_option_group_add_entries (group, (const GOptionEntry *) (gpointer) entries->data);
  g_option_context_set_main_group (context, group);
  g_option_context_set_summary (context,
                                "Accepts order commands (POST /v1/commands) and serves the event "
                                "log (GET /v1/events, /v1/events/stream) as described in "
                                "docs/protocol.md.");
  g_option_context_set_description (context,
                                    "Every option can also be set in the environment "
                                    "(ORDERDESK_LISTEN, ORDERDESK_STORE_WAIT, …) and in the "
                                    "[server] group of the --config file (or ORDERDESK_CONFIG); "
                                    "a flag wins over the environment, which wins over the "
                                    "file.");
  if (!g_option_context_parse (context, argc, argv, error))
    return FALSE;
  if (*argc > 1)
    {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                   "unexpected argument '%s' (see --help)", (*argv)[1]);
      return FALSE;
    }
  if (config->show_version)
    return TRUE;

  env_config = g_getenv ("ORDERDESK_CONFIG");
  if (g_hash_table_contains (flags, "config"))
    config->config_file = g_strdup (g_hash_table_lookup (flags, "config"));
  else if (env_config != NULL && *env_config != '\0')
    config->config_file = g_strdup (env_config);
  if (config->config_file != NULL && !load_file (config, file_values, error))
    return FALSE;

  for (guint i = 0; i < G_N_ELEMENTS (options); i++)
    {
      const Option *option = &options[i];
      g_autofree char *env = env_name (option->name);
      g_autofree char *where = NULL;
      const char *text = NULL;
      const char *env_value = g_getenv (env);
      const char *file_value = g_hash_table_lookup (file_values, option->name);

      if ((text = g_hash_table_lookup (flags, option->name)) != NULL)
        where = g_strconcat ("--", option->name, NULL);
      else if (env_value != NULL && *env_value != '\0')
        {
          text = env_value;
          where = g_strconcat ("environment variable ", env, NULL);
        }
      else if (file_value != NULL)
        {
          const char *nl = strchr (file_value, '\n');

          text = nl + 1;
          where = g_strdup_printf ("%s:%.*s", config->config_file, (int) (nl - file_value),
                                   file_value);
        }
      else if (option->fallback != NULL)
        {
          text = option->fallback;
          where = g_strdup ("default");
        }
      if (text == NULL)
        continue;
      if (!set_value (config, option, text, where, error))
        return FALSE;
      g_hash_table_insert (config->sources, (gpointer) option->name,
                           g_str_has_prefix (where, "environment variable ")
                             ? g_strdup (env) : g_steal_pointer (&where));
    }
  return TRUE;
}

char *
od_server_config_dump (OdServerConfig *config)
{
  GString *out = g_string_new (NULL);

  if (config->config_file != NULL)
    g_string_append_printf (out, "# config file: %s\n", config->config_file);
  g_string_append (out, "[" CONFIG_GROUP "]\n");
  for (guint i = 0; i < G_N_ELEMENTS (options); i++)
    {
      const Option *option = &options[i];
      gpointer field = G_STRUCT_MEMBER_P (config, option->offset);
      const char *source = g_hash_table_lookup (config->sources, option->name);
      g_autofree char *value = NULL;

      switch (option->type)
        {
        case TYPE_STRING:
        case TYPE_FILENAME:
          if (*(char **) field == NULL)
            continue;
          /* A secret is only said to be set. */
          value = g_strdup (strcmp (option->name, "metrics-token") == 0 ? "(set)"
                            : *(char **) field);
          break;
        case TYPE_BOOL:
          value = g_strdup (*(gboolean *) field ? "true" : "false");
          break;
        case TYPE_INT:
          value = g_strdup_printf ("%d", *(int *) field);
          break;
        case TYPE_DOUBLE:
          value = g_strdup_printf ("%g", *(double *) field);
          break;
        case TYPE_RATE:
          value = g_strdup_printf ("%g:%g", config->rate_limit, config->rate_burst);
          break;
        default:
          g_assert_not_reached ();
        }
      g_string_append_printf (out, "%s = %s  # %s\n", option->name, value,
                              source ? source : "default");
    }
  return g_string_free (out, FALSE);
}

gboolean
od_server_config_listen_is_loopback (const char *listen)
{
  const char *colon = strrchr (listen, ':');
  g_autofree char *host = NULL;
  g_autoptr(GInetAddress) address = NULL;

  if (colon == NULL)
    return FALSE;
  host = g_strndup (listen, colon - listen);
  if (host[0] == '[' && strlen (host) >= 2)
    {
      char *inner = g_strndup (host + 1, strlen (host) - 2);

      g_free (host);
      host = inner;
    }
  address = g_inet_address_new_from_string (host);
  return address != NULL && g_inet_address_get_is_loopback (address);
}
