/* What config.c, which holds the table of keys and the parser, shares with config_doc.c, which
 * prints the documentation from that table. Not for use outside the two. */
#ifndef OVERSYNCD_CONFIG_INTERNAL_H
#define OVERSYNCD_CONFIG_INTERNAL_H

#include <stddef.h>

struct config_section {
    const char *name;        /* as in config_keys[].section */
    const char *title;       /* as written in a file */
    const char *description;
};

/* The sections in the order they are documented; [table SCHEMA.NAME] comes last. */
extern const struct config_section config_sections[];
extern const size_t n_config_sections;

/* The section name of the [table SCHEMA.NAME] rows of config_keys. */
#define CONFIG_TABLE_SECTION "table"

/* "a, b or c" from a NULL-terminated list. */
void config_join_choices(const char *const *choices, char *out, size_t outlen);
/* What a bare number of a duration key means: "milliseconds" or "seconds". */
const char *config_unit_long_name(long unit_us);

#endif
