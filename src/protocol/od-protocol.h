/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-command.h"
#include "od-event.h"
#include "od-http.h"
#include "od-json.h"
#include "od-order.h"
#include "od-problem.h"
#include "od-uuid.h"
