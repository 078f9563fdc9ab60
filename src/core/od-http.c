/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-http.h"

#include <string.h>

void
od_http_authorize (SoupMessage *msg,
                   const char  *token)
{
  g_autofree char *auth = NULL;

  g_return_if_fail (SOUP_IS_MESSAGE (msg));

  if (token == NULL)
    return;
  auth = g_strconcat ("Bearer ", token, NULL);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization", auth);
  /* The header holds its own copy: this one is not left in freed memory. */
  memset (auth, 0, strlen (auth));
}
