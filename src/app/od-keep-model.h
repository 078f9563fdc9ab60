/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-order-list-model.h"

G_BEGIN_DECLS

#define OD_TYPE_KEEP_MODEL (od_keep_model_get_type ())
G_DECLARE_FINAL_TYPE (OdKeepModel, od_keep_model, OD, KEEP_MODEL, GObject)

OdKeepModel      *od_keep_model_new        (OdOrderListModel *source);
OdOrderListModel *od_keep_model_get_source (OdKeepModel      *self);
gboolean          od_keep_model_get_held   (OdKeepModel      *self);

G_END_DECLS
