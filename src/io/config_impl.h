/* config_impl.h — what the files of the config module share (config.c parses and
 * checks, config_keys.c holds the key table and formats values, config_write.c writes
 * INI, help text and the Markdown reference). */
#ifndef MPITRAIN_IO_CONFIG_IMPL_H
#define MPITRAIN_IO_CONFIG_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "io/config.h"

typedef enum { KT_INT, KT_INT64, KT_DOUBLE, KT_BOOL, KT_STRING, KT_ENUM } KeyType;

typedef struct {
    const char *section;
    const char *key;
    KeyType type;
    size_t off;        /* offsetof(Config, field) */
    size_t size;       /* sizeof the field (strings: buffer size incl. NUL) */
    int64_t imin, imax; /* KT_INT, KT_INT64: closed bounds; KT_STRING: imin = min length */
    double dmin, dmax; /* KT_DOUBLE bounds */
    int dmin_open, dmax_open; /* KT_DOUBLE: 1 if the bound itself is excluded */
    const char *allowed; /* KT_ENUM: "a|b|c" (first match is stored as written here) */
    const char *def;   /* default, as text */
    const char *help;
} KeyDesc;

/* The table: every key of Config, in section order (config_keys.c); at most
 * CONFIG_MAX_KEYS keys (config_defaults checks). */
#define CONFIG_MAX_KEYS 128
extern const KeyDesc config_keys[];
extern const int config_nkeys;

/* "int", "int64", "number", "bool", "string" or "enum". */
const char *config_type_name(const KeyDesc *k);
/* Append printf output to buf[n] at *len (truncating, always NUL-terminated). */
void config_appendf(char *buf, size_t n, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A double as the shortest text that reads back to the same value. */
void config_format_double(double v, char *buf, size_t n);
/* The allowed values or bounds of k, e.g. "1..65536", "(0, 4096]", "sgd|adamw". */
void config_describe_allowed(const KeyDesc *k, char *buf, size_t n);
/* A field's current value as INI text (strings quoted and escaped if `quote`). */
void config_format_value(const KeyDesc *k, const Config *c, int quote, char *buf, size_t n);

#endif
