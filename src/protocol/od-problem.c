/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-problem.h"
#include "od-json.h"

#include <string.h>

typedef struct
{
  const char *name;
  guint       status;
  const char *title;
} CodeInfo;

/* Indexed by OdProblemCode. */
static const CodeInfo codes[] = {
  { "malformed", 400, "Malformed request" },
  { "unauthorized", 401, "Unauthorized" },
  { "forbidden", 403, "Forbidden" },
  { "not_found", 404, "Not found" },
  { "method_not_allowed", 405, "Method not allowed" },
  { "request_timeout", 408, "Request timeout" },
  { "version_conflict", 409, "Version conflict" },
  { "invalid_state", 409, "Invalid state" },
  { "order_exists", 409, "Order exists" },
  { "idempotency_key_missing", 400, "Idempotency-Key missing" },
  { "idempotency_in_flight", 409, "Request in flight" },
  { "idempotency_key_reused", 422, "Idempotency-Key reused" },
  { "invalid_command", 422, "Invalid command" },
  { "payload_too_large", 413, "Payload too large" },
  { "unsupported_media_type", 415, "Unsupported media type" },
  { "headers_too_large", 431, "Request headers too large" },
  { "rate_limited", 429, "Too many requests" },
  { "internal", 500, "Internal error" },
  { "unavailable", 503, "Service unavailable" },
  { "not_ready", 503, "Not ready" },
  { "refund_exceeds_total", 422, "Refund exceeds total" },
  { "unknown", 500, "Unknown problem" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (codes) == OD_PROBLEM_UNKNOWN + 1);

guint
od_problem_code_status (OdProblemCode code)
{
  g_return_val_if_fail (code <= OD_PROBLEM_UNKNOWN, 500);
  return codes[code].status;
}

const char *
od_problem_code_name (OdProblemCode code)
{
  g_return_val_if_fail (code <= OD_PROBLEM_UNKNOWN, "unknown");
  return codes[code].name;
}

OdProblemCode
od_problem_code_from_name (const char *name)
{
  if (name == NULL)
    return OD_PROBLEM_UNKNOWN;
  for (guint i = 0; i < OD_PROBLEM_UNKNOWN; i++)
    if (strcmp (codes[i].name, name) == 0)
      return i;
  return OD_PROBLEM_UNKNOWN;
}

OdProblem *
od_problem_new (OdProblemCode  code,
                const char    *detail_format,
                ...)
{
  OdProblem *problem = g_new0 (OdProblem, 1);
  va_list args;

  problem->code = code;
  problem->status = od_problem_code_status (code);
  problem->code_name = g_strdup (od_problem_code_name (code));
  problem->title = g_strdup (codes[code].title);
  problem->current_version = -1;
  problem->refundable_cents = -1;
  va_start (args, detail_format);
  problem->detail = g_strdup_vprintf (detail_format, args);
  va_end (args);
  return problem;
}

void
od_field_error_free (OdFieldError *error)
{
  g_free (error->field);
  g_free (error->message);
  g_free (error);
}

void
od_problem_free (OdProblem *problem)
{
  if (problem == NULL)
    return;
  g_free (problem->code_name);
  g_free (problem->title);
  g_free (problem->detail);
  g_clear_pointer (&problem->errors, g_ptr_array_unref);
  g_free (problem);
}

void
od_problem_add_error (OdProblem  *problem,
                      const char *field,
                      const char *message)
{
  OdFieldError *error = g_new0 (OdFieldError, 1);

  error->field = g_strdup (field);
  error->message = g_strdup (message);
  if (problem->errors == NULL)
    problem->errors = g_ptr_array_new_with_free_func ((GDestroyNotify) od_field_error_free);
  g_ptr_array_add (problem->errors, error);
}

char *
od_problem_to_json (const OdProblem *problem)
{
  GString *out = g_string_new ("{");
  g_autofree char *type = g_strconcat ("urn:orderdesk:problem:", problem->code_name, NULL);

  od_json_append_member (out, "type", type);
  g_string_append_c (out, ',');
  od_json_append_member (out, "title", problem->title);
  g_string_append_printf (out, ",\"status\":%u,", problem->status);
  od_json_append_member (out, "detail", problem->detail ? problem->detail : "");
  g_string_append_c (out, ',');
  od_json_append_member (out, "code", problem->code_name);
  if (problem->current_version >= 0)
    g_string_append_printf (out, ",\"current_version\":%" G_GINT64_FORMAT,
                            problem->current_version);
  if (problem->retry_after > 0)
    g_string_append_printf (out, ",\"retry_after\":%u", problem->retry_after);
  if (problem->refundable_cents >= 0)
    g_string_append_printf (out, ",\"refundable_cents\":%" G_GINT64_FORMAT,
                            problem->refundable_cents);
  if (problem->errors != NULL && problem->errors->len > 0)
    {
      g_string_append (out, ",\"errors\":[");
      for (guint i = 0; i < problem->errors->len; i++)
        {
          OdFieldError *error = g_ptr_array_index (problem->errors, i);

          if (i > 0)
            g_string_append_c (out, ',');
          g_string_append_c (out, '{');
          od_json_append_member (out, "field", error->field);
          g_string_append_c (out, ',');
          od_json_append_member (out, "message", error->message);
          g_string_append_c (out, '}');
        }
      g_string_append_c (out, ']');
    }
  g_string_append_c (out, '}');
  return g_string_free (out, FALSE);
}

static const char *
member_string (JsonObject *object,
               const char *name)
{
  JsonNode *node = json_object_get_member (object, name);

  return od_json_is_string (node) ? json_node_get_string (node) : NULL;
}

/* Tolerant by design: whatever a server answers, the operator gets a
 * readable problem, never a crash or an empty message. */
OdProblem *
od_problem_parse (guint       status,
                  const char *body,
                  gsize       len)
{
  g_autoptr(JsonNode) root = NULL;
  OdProblem *problem = g_new0 (OdProblem, 1);
  JsonObject *object;
  JsonNode *node;

  problem->status = status;
  problem->current_version = -1;
  problem->refundable_cents = -1;
  if (body != NULL && len > 0)
    root = od_json_parse_object (body, len, NULL);
  if (root == NULL)
    {
      problem->code = OD_PROBLEM_UNKNOWN;
      problem->code_name = g_strdup ("unknown");
      problem->title = g_strdup_printf ("HTTP %u", status);
      problem->detail = g_strdup_printf ("The server answered HTTP %u without problem details.",
                                         status);
      return problem;
    }

  object = json_node_get_object (root);
  problem->code_name = g_strdup (member_string (object, "code") ?: "unknown");
  problem->code = od_problem_code_from_name (problem->code_name);
  problem->title = g_strdup (member_string (object, "title") ?: "");
  problem->detail = g_strdup (member_string (object, "detail") ?: problem->title);
  node = json_object_get_member (object, "current_version");
  if (od_json_is_integer (node))
    problem->current_version = json_node_get_int (node);
  node = json_object_get_member (object, "refundable_cents");
  if (od_json_is_integer (node) && json_node_get_int (node) >= 0)
    problem->refundable_cents = json_node_get_int (node);
  node = json_object_get_member (object, "retry_after");
  if (od_json_is_integer (node) && json_node_get_int (node) > 0
      && json_node_get_int (node) < G_MAXUINT)
    problem->retry_after = json_node_get_int (node);
  node = json_object_get_member (object, "errors");
  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *array = json_node_get_array (node);

      for (guint i = 0; i < json_array_get_length (array); i++)
        {
          JsonNode *item = json_array_get_element (array, i);

          if (od_json_is_object (item))
            {
              const char *field = member_string (json_node_get_object (item), "field");
              const char *message = member_string (json_node_get_object (item), "message");

              od_problem_add_error (problem, field ?: "", message ?: "");
            }
        }
    }
  return problem;
}
