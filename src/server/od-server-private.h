/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

/* What the three parts of OdServer share; nothing outside them includes
 * it.  od-server.c has the routes, the commands and their writer thread,
 * and the reads off the main loop; od-server-stream.c the event stream
 * (the ring of newest frames fed by the tail, subscribers, replay, head
 * frames); od-server-conn.c the connections (accept, the cap, request
 * limits and timeouts, answering and closing outside libsoup). */

#include <libsoup/soup.h>

#include "od-conn-stream.h"
#include "od-server.h"

/* A page (or a replay chunk) stops early once its text passes this, so
 * that 10,000 events of 2,000-character notes (~80 MB) never make a body
 * a client must refuse (the console takes pages up to 64 MiB). */
#define PAGE_TEXT_MAX      (16 * 1024 * 1024)

typedef struct
{
  gint64  position;
  gint64  prev;
  char   *frame;
  gsize   len;
} RingEntry;

typedef struct _Subscriber Subscriber;

struct _OdServer
{
  GObject        parent_instance;

  SoupServer    *soup;
  OdStore       *store;
  OdAuth        *auth;
  char          *url;
  double         rate_limit;
  double         rate_burst;
  gint64         request_timeout_usec;
  gint64         stall_timeout_usec;
  gboolean       stopping;

  GThread       *writer;
  GAsyncQueue   *queue;
  GHashTable    *in_flight;   /* "actor\nkey" */
  GHashTable    *buckets;     /* token name → Bucket */
  GHashTable    *requests;    /* SoupServerMessage, while being read */

  /* Newest events, as SSE frames, for live fan-out without a database
   * read per subscriber.  Holds every event with position > ring_base up
   * to tail_position. */
  RingEntry     *ring;
  guint          ring_start;
  guint          ring_len;
  gint64         ring_base;
  gint64         tail_position;
  gint64         head;
  gboolean       tail_reading;
  gboolean       tail_again;
  gulong         appended_id;

  GList         *subscribers;
  guint          n_subscribers;
  guint          tick_id;

  gboolean       metrics_protected;
  guint8         metrics_token_sha256[32];
  GPtrArray     *ready_waiters;  /* ReadyWaiter, answered by the check in flight */
  gboolean       ready_checking;
  /* Connections: accepted here, not by libsoup (see od-server-conn.c). */
  GSocket         *listen_socket;
  GSource         *accept_source;
  guint            accept_retry_id;
  gboolean         accept_failing;
  GTlsCertificate *certificate;
  GHashTable      *conns;        /* Conn → itself: every open connection */
  guint            max_conns;
  guint            n_refusing;
  gsize            page_bytes;   /* page bodies not yet written */
};

/* What the server keeps of one request, from its first byte to its log
 * line: one block on the message (od_server_request_info ()), where
 * there were five items of object data and a handler for its headers. */
typedef struct
{
  gint64   started;      /* monotonic µs: when its first byte came */
  gint64   headers_read; /* monotonic µs: when its headers were read; 0 before */
  char    *token_name;   /* for the log: the token's name, never the token */
  char    *request_id;
  guint    log_status;   /* the status to log when not the message's; 0 */
  gboolean too_large;    /* its chunked body went over OD_MAX_BODY */
  gpointer pending;      /* its command, waiting on the writer (od-server.c) */
} OdRequestInfo;

/* What a read off the main loop gives back. */
typedef struct
{
  GString   *text;
  GPtrArray *entries; /* RingEntry, for the tail read */
  gint64     last_position;
  gint64     head;
  guint      n_events;
} ReadResult;

/* od-server.c */
GQuark          od_request_info_quark      (void);
OdRequestInfo  *od_server_request_info     (SoupServerMessage   *msg);
void            od_server_respond          (SoupServerMessage   *msg,
                                            guint                status,
                                            const char          *content_type,
                                            char                *body);
void            od_server_respond_problem  (SoupServerMessage   *msg,
                                            OdProblem           *problem);
const char     *od_server_header_once      (SoupMessageHeaders  *headers,
                                            const char          *name,
                                            gboolean            *duplicate);
char           *od_server_head_json        (gint64               head);
const OdToken  *od_server_authenticate     (OdServer            *self,
                                            SoupServerMessage   *msg,
                                            OdRole               needed);
GHashTable     *od_server_query_params     (SoupServerMessage   *msg,
                                            gboolean            *ok);
gboolean        od_server_query_int        (GHashTable          *params,
                                            const char          *name,
                                            gint64               fallback,
                                            gint64              *out,
                                            SoupServerMessage   *msg);
/* Reads events after AFTER (at most LIMIT, none above UPTO) in a pool
 * thread, as SSE frames or as a JSON page; the callback gets a
 * ReadResult. */
void            od_server_start_read       (OdServer            *self,
                                            gint64               after,
                                            guint                limit,
                                            gint64               upto,
                                            gboolean             frames,
                                            GAsyncReadyCallback  callback,
                                            gpointer             user_data);
void            od_server_read_result_free (ReadResult          *result);
/* A GTaskThreadFunc returning the store's head as an int. */
void            od_server_head_in_thread   (GTask               *task,
                                            gpointer             source,
                                            gpointer             task_data,
                                            GCancellable        *cancellable);

/* od-server-stream.c */
void            od_server_stream_init      (OdServer            *self,
                                            gint64               head);
void            od_server_stream_clear     (OdServer            *self);
void            od_server_tail_read        (OdServer            *self);
void            od_server_stream_feed      (OdServer            *self,
                                            OdJob              **jobs,
                                            guint                n_jobs);
void            od_server_handle_stream    (OdServer            *self,
                                            SoupServerMessage   *msg);
void            od_server_stream_tick      (OdServer            *self,
                                            gint64               now);

/* od-server-conn.c */
gboolean        od_server_listen           (OdServer            *self,
                                            GInetAddress        *address,
                                            guint                port,
                                            GError             **error);
void            od_server_conn_attach      (OdServer            *self);
void            od_server_stop_accepting   (OdServer            *self);
void            od_server_msg_shutdown     (SoupServerMessage   *msg);
void            od_server_msg_body_follows (SoupServerMessage   *msg);
void            od_server_conn_tick        (OdServer            *self,
                                            gint64               now);
