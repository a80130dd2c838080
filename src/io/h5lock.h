/* h5lock.h — the one process-wide lock around HDF5 calls.
 *
 * The HDF5 library we link (Debian's hdf5-openmpi) is not built thread-safe: no two
 * threads may be inside HDF5 at the same time, whatever files they touch.  Every
 * module that calls HDF5 from more than one thread (checkpoint writer thread, dataset
 * prefetch thread, main thread) brackets its HDF5 calls with h5_lock()/h5_unlock().
 * Hold it for short stretches (one metadata operation or one bounded read/write of at
 * most a few MB), so that a background checkpoint write never stalls the data reader
 * for long.
 *
 * The lock is recursive: a thread that holds it may take it again (each h5_lock needs
 * its h5_unlock).  It never fails (a pthread error is a bug: CHECK). */
#ifndef MPITRAIN_IO_H5LOCK_H
#define MPITRAIN_IO_H5LOCK_H

void h5_lock(void);
void h5_unlock(void);

#endif
