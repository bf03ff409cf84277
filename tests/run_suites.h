/* The main() of every Check program (unit, integration and e2e): the suites run in one SRunner
 * with Check's normal output, whose last "N%: Checks: ..." line scripts/test reads. Header-only.
 *
 *     int main(void)
 *     {
 *         return run_suites(first_suite(), second_suite(), NULL);
 *     }
 */
#ifndef OVERSYNCD_TESTS_RUN_SUITES_H
#define OVERSYNCD_TESTS_RUN_SUITES_H

#include <check.h>
#include <stdarg.h>
#include <stdlib.h>

/* Runs the NULL-terminated suites; EXIT_SUCCESS when no test failed, else EXIT_FAILURE. */
static inline int run_suites(Suite *first, ...)
{
    SRunner *sr = srunner_create(first);
    va_list ap;
    va_start(ap, first);
    for (Suite *s = va_arg(ap, Suite *); s; s = va_arg(ap, Suite *))
        srunner_add_suite(sr, s);
    va_end(ap);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
