/* The documentation printed from the table of keys (config_keys[] in config.c): the example
 * file etc/oversyncd.conf.example, the Markdown reference embedded in docs/configuration.md and
 * the key reference of man/oversyncd.conf.5. tests/unit/check_config compares each with the
 * shipped file. */
#include "config.h"
#include "config_internal.h"
#include "strbuf.h"

#include <stdio.h>
#include <string.h>

static const char *type_name(const struct config_key *key)
{
    switch (key->type) {
    case CONFIG_STRING:
        return key->store == CONFIG_STORE_MATERIALIZER ? "materializer" : "string";
    case CONFIG_INT:
        return "integer";
    case CONFIG_BOOL:
        return "boolean";
    case CONFIG_DURATION:
        return "duration";
    case CONFIG_SIZE:
        return "size";
    case CONFIG_LIST:
        return "list";
    case CONFIG_ENUM:
        return "enum";
    case CONFIG_OCTAL:
        return "octal";
    }
    return "?";
}

/* The description plus what the key's row says about its values, so allowed values and units
 * are never written out twice by hand. */
static void full_description(const struct config_key *key, strbuf_t *sb)
{
    sb_puts(sb, key->description);
    if (key->choices) {
        char allowed[128];
        config_join_choices(key->choices, allowed, sizeof allowed);
        sb_printf(sb, " %s: %s.", key->type == CONFIG_LIST ? "Allowed values" : "One of",
                  allowed);
    }
    if (key->type == CONFIG_DURATION)
        sb_printf(sb, " A number without a unit is in %s.", config_unit_long_name(key->unit_us));
}

static void write_wrapped(FILE *out, const char *prefix, const char *text, size_t width)
{
    size_t room = width - strlen(prefix);
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        size_t n = strlen(p);
        if (n > room) {
            size_t cut = room;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0) {
                cut = strcspn(p, " ");
            }
            n = cut;
        }
        fprintf(out, "%s%.*s\n", prefix, (int)n, p);
        p += n;
    }
}

void config_write_example(FILE *out)
{
    enum { WIDTH = 79 };
    fputs("# oversyncd configuration\n"
          "#\n"
          "# Every key is listed below with its description and its default, commented out:\n"
          "# remove the # in front of a key to change it. Comments are lines that start\n"
          "# with # or ;. A value in double quotes is taken literally, which is needed when\n"
          "# it contains a #.\n"
          "#\n"
          "# Durations take a unit: us, ms, s, min, h or d (500ms, 3s, 1min). Sizes take\n"
          "# B, kB, MB or GB, counted in units of 1024 (64kB, 16MB).\n"
          "#\n"
          "# The environment variables DATABASE_URL and JWT_SECRET override [database] url\n"
          "# and [auth] jwt_secret.\n"
          "#\n"
          "# SIGHUP reloads this file; keys marked \"Needs a restart\" keep their old value\n"
          "# until oversyncd is restarted. Check a file before using it with\n"
          "#\n"
          "#     oversyncd --check-config -c /etc/oversyncd/oversyncd.conf\n"
          "#\n"
          "# docs/configuration.md is the full reference.\n",
          out);

    strbuf_t sb = STRBUF_INIT;
    for (size_t s = 0; s < n_config_sections; s++) {
        bool table = strcmp(config_sections[s].name, CONFIG_TABLE_SECTION) == 0;
        const char *prefix = table ? "# " : "";
        fputs("\n", out);
        if (table) {
            fprintf(out, "# %s sections\n#\n", config_sections[s].title);
            write_wrapped(out, "# ", config_sections[s].description, WIDTH);
        } else {
            fprintf(out, "%s\n", config_sections[s].title);
        }
        for (size_t i = 0; i < n_config_keys; i++) {
            const struct config_key *key = &config_keys[i];
            if (strcmp(key->section, config_sections[s].name) != 0)
                continue;
            sb_reset(&sb);
            full_description(key, &sb);
            fputs(table ? "#\n" : "\n", out);
            if (table)
                fprintf(out, "# %s:\n", key->name);
            write_wrapped(out, "# ", sb_cstr(&sb), WIDTH);
            fprintf(out, "# Default: %s.%s\n", key->default_value ? key->default_value : "unset",
                    key->reloadable ? "" : " Needs a restart.");
            if (!table) {
                if (key->default_value)
                    fprintf(out, "# %s = %s\n", key->name, key->default_value);
                else
                    fprintf(out, "# %s =\n", key->name);
            }
        }
        if (table)
            fprintf(out, "#\n%s[table business.users]\n%smaterializer = generic\n", prefix,
                    prefix);
    }
    sb_free(&sb);
}

/* Table cells must not end the cell early or open an HTML tag. */
static void write_cell(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '|')
            fputs("\\|", out);
        else if (*p == '<')
            fputs("&lt;", out);
        else
            fputc(*p, out);
    }
}

void config_write_markdown(FILE *out)
{
    strbuf_t sb = STRBUF_INIT;
    for (size_t s = 0; s < n_config_sections; s++) {
        if (s > 0)
            fputs("\n", out);
        fprintf(out, "### `%s`\n\n", config_sections[s].title);
        write_cell(out, config_sections[s].description);
        fputs("\n\n| key | type | default | reload | description |\n"
              "|---|---|---|---|---|\n", out);
        for (size_t i = 0; i < n_config_keys; i++) {
            const struct config_key *key = &config_keys[i];
            if (strcmp(key->section, config_sections[s].name) != 0)
                continue;
            sb_reset(&sb);
            full_description(key, &sb);
            fprintf(out, "| `%s` | %s | ", key->name, type_name(key));
            if (key->default_value)
                fprintf(out, "`%s`", key->default_value);
            else
                fputs("unset", out);
            fprintf(out, " | %s | ", key->reloadable ? "yes" : "restart");
            write_cell(out, sb_cstr(&sb));
            fputs(" |\n", out);
        }
    }
    sb_free(&sb);
}

/* Text for a roff line: a backslash is written \e, a minus \- (an option or a value to type, not
 * a typographic hyphen), and a line that would start with a control character is guarded. */
static void write_roff(FILE *out, const char *text)
{
    if (*text == '.' || *text == '\'')
        fputs("\\&", out);
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            fputs("\\e", out);
        else if (*p == '-')
            fputs("\\-", out);
        else
            fputc(*p, out);
    }
}

void config_write_man(FILE *out)
{
    strbuf_t sb = STRBUF_INIT;
    for (size_t s = 0; s < n_config_sections; s++) {
        fputs(".SS \"", out);
        write_roff(out, config_sections[s].title);
        fputs("\"\n", out);
        write_roff(out, config_sections[s].description);
        fputs("\n", out);
        for (size_t i = 0; i < n_config_keys; i++) {
            const struct config_key *key = &config_keys[i];
            if (strcmp(key->section, config_sections[s].name) != 0)
                continue;
            sb_reset(&sb);
            full_description(key, &sb);
            fputs(".TP\n\\fB", out);
            write_roff(out, key->name);
            fputs("\\fR (\\fI", out);
            write_roff(out, type_name(key));
            fputs("\\fR, default ", out);
            if (key->default_value) {
                fputs("\\fB", out);
                write_roff(out, key->default_value);
                fputs("\\fR", out);
            } else {
                fputs("unset", out);
            }
            fputs(key->reloadable ? ")\n" : "; needs a restart)\n", out);
            write_roff(out, sb_cstr(&sb));
            fputs("\n", out);
        }
    }
    sb_free(&sb);
}
