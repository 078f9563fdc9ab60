/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "od-format.h"
#include "od-status-pill.h"

/* An order's status as a pill in a list row.
 *
 * It asks for the width of the widest status, whatever it shows, and its
 * text is a GtkInscription, which measures the same whatever its text:
 * a row that takes another order's status is allocated and drawn again,
 * never measured.  A GtkLabel asked for a new size of the whole window
 * at each new status: GTK 4.8's X11 backend measures the whole window for
 * that before the next frame (1.5–2 ms p50 before a search's frame at a
 * million orders, 0.5 ms with this), and the frame's layout measures the
 * changed rows again.  What is left is restyling a pill whose status
 * class changed.
 *
 * Compact (set by the order list when its columns do not fit even with
 * the optional ones hidden), its minimum is the second widest status:
 * only the widest ("Partially refunded") is then cut short, and the
 * total beside it stays whole. */

struct _OdStatusPill
{
  GtkWidget      parent_instance;

  /* The pill: an inscription with the .status-pill style, as wide as
   * its own text (as a label would be), from the start of the space. */
  GtkWidget     *text;
  OdOrderStatus  status;
  /* The text's width of each status, in pixels, and the pill's padding
   * and border, from the last measure (the font is the style's). */
  int            widths[OD_STATUS_N];
  int            frame_width;
  gboolean       compact;
};

G_DEFINE_FINAL_TYPE (OdStatusPill, od_status_pill, GTK_TYPE_WIDGET)

static void
od_status_pill_measure (GtkWidget      *widget,
                        GtkOrientation  orientation,
                        int             for_size,
                        int            *minimum,
                        int            *natural,
                        int            *minimum_baseline,
                        int            *natural_baseline)
{
  OdStatusPill *self = OD_STATUS_PILL (widget);
  int widest = 0, second = 0;

  if (orientation == GTK_ORIENTATION_VERTICAL)
    {
      gtk_widget_measure (self->text, orientation, -1, minimum, natural,
                          minimum_baseline, natural_baseline);
      return;
    }

  /* With no chars asked for, the inscription's width is its padding
   * and border. */
  gtk_widget_measure (self->text, orientation, -1, &self->frame_width, NULL, NULL, NULL);
  for (OdOrderStatus status = OD_STATUS_NONE; status < OD_STATUS_N; status++)
    {
      g_autoptr(PangoLayout) layout = gtk_widget_create_pango_layout (self->text,
                                                                      od_format_status (status));
      int width;

      pango_layout_get_pixel_size (layout, &width, NULL);
      self->widths[status] = width;
      if (width > widest)
        {
          second = widest;
          widest = width;
        }
      else
        second = MAX (second, width);
    }
  *natural = self->frame_width + widest;
  *minimum = self->frame_width + (self->compact ? second : widest);
}

static void
od_status_pill_size_allocate (GtkWidget *widget,
                              int        width,
                              int        height,
                              int        baseline)
{
  OdStatusPill *self = OD_STATUS_PILL (widget);
  int text_height;

  gtk_widget_measure (self->text, GTK_ORIENTATION_VERTICAL, -1, NULL, &text_height, NULL, NULL);
  text_height = MIN (text_height, height);
  gtk_widget_size_allocate (self->text,
                            &(GtkAllocation) {
                              gtk_widget_get_direction (widget) == GTK_TEXT_DIR_RTL
                                ? width - MIN (width, self->frame_width + self->widths[self->status])
                                : 0,
                              (height - text_height) / 2,
                              MIN (width, self->frame_width + self->widths[self->status]),
                              text_height,
                            },
                            -1);
}

static void
od_status_pill_dispose (GObject *object)
{
  OdStatusPill *self = OD_STATUS_PILL (object);

  g_clear_pointer (&self->text, gtk_widget_unparent);
  G_OBJECT_CLASS (od_status_pill_parent_class)->dispose (object);
}

static void
od_status_pill_class_init (OdStatusPillClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_status_pill_dispose;
  widget_class->measure = od_status_pill_measure;
  widget_class->size_allocate = od_status_pill_size_allocate;
  gtk_widget_class_set_css_name (widget_class, "odstatuspill");
}

static void
od_status_pill_init (OdStatusPill *self)
{
  self->text = gtk_inscription_new (NULL);
  gtk_inscription_set_min_chars (GTK_INSCRIPTION (self->text), 0);
  gtk_inscription_set_nat_chars (GTK_INSCRIPTION (self->text), 0);
  gtk_inscription_set_xalign (GTK_INSCRIPTION (self->text), 0.5);
  gtk_inscription_set_text_overflow (GTK_INSCRIPTION (self->text),
                                     GTK_INSCRIPTION_OVERFLOW_ELLIPSIZE_END);
  gtk_widget_add_css_class (self->text, "status-pill");
  gtk_widget_add_css_class (self->text, od_status_css_class (OD_STATUS_NONE));
  gtk_widget_set_parent (self->text, GTK_WIDGET (self));
  self->status = OD_STATUS_NONE;
}

GtkWidget *
od_status_pill_new (void)
{
  return g_object_new (OD_TYPE_STATUS_PILL, NULL);
}

void
od_status_pill_set_status (OdStatusPill  *self,
                           OdOrderStatus  status)
{
  g_return_if_fail (OD_IS_STATUS_PILL (self));

  if (status >= OD_STATUS_N)
    status = OD_STATUS_NONE;
  /* The first status is set before any text: none is shown yet. */
  if (status == self->status && gtk_inscription_get_text (GTK_INSCRIPTION (self->text)) != NULL)
    return;
  gtk_widget_remove_css_class (self->text, od_status_css_class (self->status));
  gtk_widget_add_css_class (self->text, od_status_css_class (status));
  gtk_inscription_set_text (GTK_INSCRIPTION (self->text), od_format_status (status));
  self->status = status;
  /* Its pill's width follows the text: a new allocation, no new size. */
  gtk_widget_queue_allocate (GTK_WIDGET (self));
}

/* Whether the pill may be narrower than its widest status (see above). */
void
od_status_pill_set_compact (OdStatusPill *self,
                            gboolean      compact)
{
  g_return_if_fail (OD_IS_STATUS_PILL (self));

  compact = !!compact;
  if (self->compact == compact)
    return;
  self->compact = compact;
  gtk_widget_queue_resize (GTK_WIDGET (self));
}
