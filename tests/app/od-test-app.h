/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-command-dialog-private.h"
#include "od-window-private.h"

G_BEGIN_DECLS

typedef gboolean (*OdTestCondition) (gpointer data);

/* Prepares GTK for a test program; returns FALSE (and the program should
 * exit 77) when there is no display. */
gboolean       od_test_app_init      (int            *argc,
                                      char         ***argv);
/* The program's one application, registered (a new reference). */
OdApplication *od_test_app_new       (void);
/* A test's application, the window it opens (or NULL) and its own
 * XDG_DATA_HOME, so that profiles' caches and settings stay inside the
 * test; for g_test_add ()'s set-up and tear-down. */
typedef struct
{
  OdApplication *app;
  OdWindow      *window;
  char          *tmpdir;
} OdTestAppFixture;

void           od_test_app_fixture_set_up    (OdTestAppFixture *f,
                                              gconstpointer     data);
/* Destroys the window, if any, and lets GTK finish with it. */
void           od_test_app_close_window      (OdTestAppFixture *f);
void           od_test_app_fixture_tear_down (OdTestAppFixture *f,
                                              gconstpointer     data);
/* Iterates the main loop until cond is true or timeout_ms passed. */
gboolean       od_test_wait          (OdTestCondition cond,
                                      gpointer        data,
                                      guint           timeout_ms);
void           od_test_spin          (guint           ms);
/* Waits until the window has drawn a frame. */
void           od_test_wait_frame    (GtkWidget      *widget);
gsize          od_test_rss_kib       (void);
guint16        od_test_free_port     (void);
/* Copies a cache file (and resets nothing): tests that write get their own. */
char          *od_test_copy_cache    (const char     *path,
                                      const char     *dir);

/* The text of a list cell: its first label or inscription, descending
 * through first children (an inscription without text: ""); NULL if it
 * has neither. */
const char    *od_test_cell_text     (GtkWidget      *cell);
/* The mapped label under root showing exactly text, or NULL. */
GtkWidget     *od_test_find_label    (GtkWidget      *root,
                                      const char     *text);
/* The mapped label under root whose text starts with prefix, or NULL. */
GtkWidget     *od_test_find_label_prefix (GtkWidget  *root,
                                          const char *prefix);
/* The label is as wide as its text needs and lies inside its window:
 * nothing of it is ellipsized or cut off by the window's edge. */
void           od_test_assert_label_whole (GtkWidget *label);

G_END_DECLS
