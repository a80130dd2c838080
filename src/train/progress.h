/* progress.h — the terminal progress line: "\r" updates on a TTY, periodic plain lines
 * otherwise (a Slurm log), nothing when off. */
#ifndef MPITRAIN_TRAIN_PROGRESS_H
#define MPITRAIN_TRAIN_PROGRESS_H

#include <stdint.h>

typedef struct {
    int mode;          /* 0 off, 1 tty, 2 plain */
    uint64_t total;
    double t_start, t_last;
    int dirty;         /* a \r line is on screen */
} Progress;

/* how: auto | tty | plain | off; active = 0 turns it off (ranks other than 0). */
void progress_init(Progress *p, const char *how, uint64_t total_steps, int active);
void progress_update(Progress *p, uint64_t step, uint64_t epoch, double loss, double lr,
                     double samples_per_s);
void progress_done(Progress *p);
/* End a \r line before another message is printed. */
void progress_clear(void);

#endif
