/* SPDX-License-Identifier: GPL-3.0-or-later */
/* A VFS over SQLite's own ("unix") that writes each commit's WAL frames
 * with one write () instead of two a frame (the 24-byte frame header,
 * then the page).  Nothing else changes: every other call, and every
 * write that is not a frame in that form, goes straight to the file
 * below.
 *
 * Why it is safe: SQLite reads a frame only after it wrote it, and other
 * connections read only frames of committed transactions.  The frames
 * kept here are written (1) before any other call on the WAL file, read,
 * sync, truncate, size, lock, close alike; (2) before a write that does
 * not continue them; and (3) right after the page of a commit frame (a
 * frame header whose "database size after commit" is not 0), which
 * SQLite writes before it publishes the commit in the WAL index, with or
 * without a sync.  A write that fails there fails that page's write, so
 * SQLite sees the error where it would have seen it.  A process killed
 * with frames kept loses only frames of a transaction not yet committed,
 * as if it had died before writing them (test-wal-vfs). */
#include "od-wal-vfs.h"

#include <string.h>

#define WAL_FRAME_HEADER 24
/* The most the unix VFS writes at once (seekAndWriteFd () masks the
 * length with 0x1ffff): frames that would not fit go out before. */
#define MAX_WRITE 0x1ffff

typedef struct
{
  sqlite3_file base;
  sqlite3_file *real;   /* the file below, allocated right after this */
  gboolean is_wal;
  char *buf;
  gsize len;
  gsize cap;
  sqlite3_int64 offset; /* of buf[0] in the file */
  gboolean page_due;    /* buf ends with a frame header */
  gboolean commit_due;  /* ... of a commit frame */
} WalFile;

static sqlite3_vfs *below;

static int
flush (WalFile *f)
{
  int rc;

  if (f->len == 0)
    return SQLITE_OK;
  rc = f->real->pMethods->xWrite (f->real, f->buf, (int) f->len, f->offset);
  f->len = 0;
  f->page_due = FALSE;
  f->commit_due = FALSE;
  return rc;
}

static int
wal_close (sqlite3_file *file)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);
  int rc2 = f->real->pMethods->xClose (f->real);

  g_free (f->buf);
  f->buf = NULL;
  return rc != SQLITE_OK ? rc : rc2;
}

static int
wal_read (sqlite3_file *file,
          void         *data,
          int           amount,
          sqlite3_int64 offset)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  if (rc != SQLITE_OK)
    return rc;
  return f->real->pMethods->xRead (f->real, data, amount, offset);
}

/* A frame is written as its header, then its page (walWriteOneFrame ()):
 * only writes in that form are kept, each header with the page after it.
 * Any other write (the log's own header, or frames written some other
 * way by another SQLite) goes straight through, after what is kept. */
static int
wal_write (sqlite3_file *file,
           const void   *data,
           int           amount,
           sqlite3_int64 offset)
{
  WalFile *f = (WalFile *) file;
  gboolean contiguous;
  gboolean is_page;
  int rc;

  if (!f->is_wal)
    return f->real->pMethods->xWrite (f->real, data, amount, offset);
  contiguous = f->len > 0 && offset == f->offset + (sqlite3_int64) f->len
               && f->len + amount <= MAX_WRITE;
  is_page = f->page_due && contiguous && amount != WAL_FRAME_HEADER;
  if (!is_page && (amount != WAL_FRAME_HEADER || (f->len > 0 && !contiguous)
                   || f->page_due))
    {
      rc = flush (f);
      if (rc != SQLITE_OK)
        return rc;
      if (amount != WAL_FRAME_HEADER)
        return f->real->pMethods->xWrite (f->real, data, amount, offset);
    }
  if (f->len == 0)
    f->offset = offset;
  if (f->len + amount > f->cap)
    {
      f->cap = MAX (f->cap * 2, f->len + amount);
      f->buf = g_realloc (f->buf, f->cap);
    }
  memcpy (f->buf + f->len, data, amount);
  f->len += amount;
  if (is_page)
    {
      f->page_due = FALSE;
      /* The page of a commit frame: SQLite publishes the commit next. */
      if (f->commit_due)
        return flush (f);
      return SQLITE_OK;
    }
  /* Bytes 4–7 of a frame header: the database size after a commit, 0
   * in every other frame. */
  f->page_due = TRUE;
  f->commit_due = memcmp ((const char *) data + 4, "\0\0\0\0", 4) != 0;
  return SQLITE_OK;
}

static int
wal_truncate (sqlite3_file *file,
              sqlite3_int64 size)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate (f->real, size);
}

static int
wal_sync (sqlite3_file *file,
          int           flags)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xSync (f->real, flags);
}

static int
wal_file_size (sqlite3_file  *file,
               sqlite3_int64 *size)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize (f->real, size);
}

static int
wal_lock (sqlite3_file *file,
          int           level)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xLock (f->real, level);
}

static int
wal_unlock (sqlite3_file *file,
            int           level)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xUnlock (f->real, level);
}

static int
wal_check_reserved_lock (sqlite3_file *file,
                         int          *out)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xCheckReservedLock (f->real, out);
}

static int
wal_file_control (sqlite3_file *file,
                  int           op,
                  void         *arg)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl (f->real, op, arg);
}

static int
wal_sector_size (sqlite3_file *file)
{
  WalFile *f = (WalFile *) file;

  return f->real->pMethods->xSectorSize (f->real);
}

static int
wal_device_characteristics (sqlite3_file *file)
{
  WalFile *f = (WalFile *) file;

  return f->real->pMethods->xDeviceCharacteristics (f->real);
}

static int
wal_shm_map (sqlite3_file  *file,
             int            region,
             int            size,
             int            extend,
             void volatile **out)
{
  WalFile *f = (WalFile *) file;

  return f->real->pMethods->xShmMap (f->real, region, size, extend, out);
}

static int
wal_shm_lock (sqlite3_file *file,
              int           offset,
              int           n,
              int           flags)
{
  WalFile *f = (WalFile *) file;

  return f->real->pMethods->xShmLock (f->real, offset, n, flags);
}

static void
wal_shm_barrier (sqlite3_file *file)
{
  WalFile *f = (WalFile *) file;

  f->real->pMethods->xShmBarrier (f->real);
}

static int
wal_shm_unmap (sqlite3_file *file,
               int           delete_flag)
{
  WalFile *f = (WalFile *) file;

  return f->real->pMethods->xShmUnmap (f->real, delete_flag);
}

static int
wal_fetch (sqlite3_file  *file,
           sqlite3_int64  offset,
           int            amount,
           void         **out)
{
  WalFile *f = (WalFile *) file;
  int rc = flush (f);

  return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch (f->real, offset, amount, out);
}

static int
wal_unfetch (sqlite3_file *file,
             sqlite3_int64 offset,
             void         *p)
{
  WalFile *f = (WalFile *) file;

  return f->real->pMethods->xUnfetch (f->real, offset, p);
}

static const sqlite3_io_methods wal_methods = {
  .iVersion = 3,
  .xClose = wal_close,
  .xRead = wal_read,
  .xWrite = wal_write,
  .xTruncate = wal_truncate,
  .xSync = wal_sync,
  .xFileSize = wal_file_size,
  .xLock = wal_lock,
  .xUnlock = wal_unlock,
  .xCheckReservedLock = wal_check_reserved_lock,
  .xFileControl = wal_file_control,
  .xSectorSize = wal_sector_size,
  .xDeviceCharacteristics = wal_device_characteristics,
  .xShmMap = wal_shm_map,
  .xShmLock = wal_shm_lock,
  .xShmBarrier = wal_shm_barrier,
  .xShmUnmap = wal_shm_unmap,
  .xFetch = wal_fetch,
  .xUnfetch = wal_unfetch,
};

static int
vfs_open (sqlite3_vfs  *vfs,
          const char   *name,
          sqlite3_file *file,
          int           flags,
          int          *out_flags)
{
  WalFile *f = (WalFile *) file;
  int rc;

  memset (f, 0, sizeof *f);
  f->real = (sqlite3_file *) (f + 1);
  rc = below->xOpen (below, name, f->real, flags, out_flags);
  /* Only a file the VFS below opened has methods to close it with. */
  if (f->real->pMethods == NULL)
    return rc;
  /* Every method of the file below is there (unix files are version 3),
   * so ours can stand in for all of them. */
  g_assert (f->real->pMethods->iVersion >= 3);
  f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->base.pMethods = &wal_methods;
  return rc;
}

static sqlite3_vfs vfs;

const char *
od_wal_vfs_register (void)
{
  static gsize once = 0;

  if (g_once_init_enter (&once))
    {
      below = sqlite3_vfs_find ("unix");
      g_assert (below != NULL);
      vfs = *below;
      vfs.zName = OD_WAL_VFS_NAME;
      vfs.szOsFile = sizeof (WalFile) + below->szOsFile;
      vfs.pNext = NULL;
      vfs.xOpen = vfs_open;
      sqlite3_vfs_register (&vfs, 0);
      g_once_init_leave (&once, 1);
    }
  return OD_WAL_VFS_NAME;
}
