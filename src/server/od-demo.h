/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-server.h"

G_BEGIN_DECLS

#define OD_DEMO_OPERATOR_TOKEN "demo-operator"
#define OD_DEMO_VIEWER_TOKEN   "demo-viewer"

typedef struct _OdDemo OdDemo;

char    *od_demo_tokens_json (void);
OdDemo  *od_demo_new         (OdServer  *server);
void     od_demo_seed        (OdDemo    *demo,
                              guint      n_orders);
void     od_demo_start       (OdDemo    *demo,
                              double     rate);
void     od_demo_free        (OdDemo    *demo);

G_END_DECLS
