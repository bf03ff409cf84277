/* Captures what the code under test writes to standard error (log lines go there with one write
 * each), for the tests that check log output: unit (check_util, check_jwt) and integration
 * (check_upload, check_fk). Header-only; include it from one test file each. */
#ifndef OVERSYNCD_TESTS_CAPTURE_H
#define OVERSYNCD_TESTS_CAPTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct capture {
    int saved_fd;
    FILE *tmp;
};

/* From now on file descriptor 2 goes to a temporary file. */
static inline void capture_start(struct capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    ck_assert_ptr_nonnull(c->tmp);
    c->saved_fd = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved_fd, 0);
    ck_assert_int_ge(dup2(fileno(c->tmp), STDERR_FILENO), 0);
}

/* Restores standard error and returns what was written meanwhile (malloc'd, NUL-terminated). */
static inline char *capture_end(struct capture *c)
{
    fflush(stderr);
    ck_assert_int_ge(dup2(c->saved_fd, STDERR_FILENO), 0);
    close(c->saved_fd);
    ck_assert_int_eq(fseek(c->tmp, 0, SEEK_END), 0);
    long n = ftell(c->tmp);
    ck_assert_int_ge(n, 0);
    char *text = malloc((size_t)n + 1);
    rewind(c->tmp);
    size_t got = fread(text, 1, (size_t)n, c->tmp);
    text[got] = '\0';
    fclose(c->tmp);
    return text;
}

#endif
