/* Authentication (SPEC §2): hostile JWTs each rejected with their exact message, valid HS/RS/ES
 * tokens accepted, key selection by kid, the Authorization header, the trusted_header mode and
 * token minting. Keys are generated at start-up; `now` is fixed so nothing depends on the clock
 * except the minting round trip, whose tokens carry the real time. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/auth.h"
/* The cache test looks inside the context; libjwt's jwt.h has an enum jwt_alg of its own. */
#define jwt_alg oversyncd_jwt_alg
#include "auth/auth_internal.h"
#undef jwt_alg
#include "../capture.h"
#include "config.h"
#include "../run_suites.h"

#define NOW 1700000000L
#define LEEWAY 30L
#define SECRET "0123456789abcdef0123456789abcdef-unit-test-secret"
#define ISS "https://issuer.example"
#define AUD "oversync"
#define MAX_TOKEN 8192L

/* ------------------------------------------------------------------ fixtures built in main() */

struct keypair {
    EVP_PKEY *pkey;
    char *priv_pem;
    char *pub_pem;
    char *pub_path;
};

static struct keypair rsa_a, rsa_b, ec_e, ec_other, ec_p384, rsa_small;
static char tmpdir[] = "/tmp/check_jwt.XXXXXX";
static char *garbage_path, *private_path, *missing_path;

static char *bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *write_temp(const char *name, const char *text)
{
    size_t n = strlen(tmpdir) + strlen(name) + 2;
    char *path = malloc(n);
    snprintf(path, n, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0) {
        fprintf(stderr, "check_jwt: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    return path;
}

static void make_keypair(struct keypair *k, EVP_PKEY *pkey, const char *name)
{
    if (!pkey) {
        fprintf(stderr, "check_jwt: key generation failed for %s\n", name);
        exit(2);
    }
    k->pkey = pkey;
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
    k->priv_pem = bio_text(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, pkey);
    k->pub_pem = bio_text(b);
    BIO_free(b);
    k->pub_path = write_temp(name, k->pub_pem);
}

static void setup_keys(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("check_jwt: mkdtemp");
        exit(2);
    }
    make_keypair(&rsa_a, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), "rsa_a.pem");
    make_keypair(&rsa_b, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), "rsa_b.pem");
    make_keypair(&rsa_small, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024), "rsa_1024.pem");
    make_keypair(&ec_e, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), "ec_e.pem");
    make_keypair(&ec_other, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), "ec_other.pem");
    make_keypair(&ec_p384, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"), "ec_p384.pem");
    garbage_path = write_temp("garbage.pem", "this is not a key\n");
    private_path = write_temp("private.pem", rsa_a.priv_pem);
    missing_path = malloc(strlen(tmpdir) + 32);
    sprintf(missing_path, "%s/does-not-exist.pem", tmpdir);
}

static void free_keypair(struct keypair *k)
{
    unlink(k->pub_path);
    free(k->pub_path);
    free(k->pub_pem);
    free(k->priv_pem);
    EVP_PKEY_free(k->pkey);
}

static void cleanup_keys(void)
{
    free_keypair(&rsa_a);
    free_keypair(&rsa_b);
    free_keypair(&rsa_small);
    free_keypair(&ec_e);
    free_keypair(&ec_other);
    free_keypair(&ec_p384);
    unlink(garbage_path);
    unlink(private_path);
    free(garbage_path);
    free(private_path);
    free(missing_path);
    rmdir(tmpdir);
}

/* ------------------------------------------------------------------ configurations */

/* struct config points into this, so it stays valid for as long as the test needs it. */
struct tcfg {
    struct config c;
    char *algs[6];
    struct jwt_key_file keys[6];
};

static void tcfg_init(struct tcfg *t)
{
    memset(t, 0, sizeof *t);
    t->c.auth_mode = AUTH_MODE_JWT;
    t->c.jwt_secret = SECRET;
    t->c.jwt_algorithms = t->algs;
    t->c.jwt_public_key_files = t->keys;
    t->c.jwt_leeway_s = LEEWAY;
    t->c.jwt_require_exp = true;
    t->c.jwt_max_token_bytes = MAX_TOKEN;
}

static void tcfg_alg(struct tcfg *t, const char *alg)
{
    t->algs[t->c.n_jwt_algorithms++] = (char *)alg;
}

static void tcfg_key(struct tcfg *t, const char *kid, const char *path)
{
    struct jwt_key_file *k = &t->keys[t->c.n_jwt_public_key_files++];
    k->kid = (char *)kid;
    k->path = (char *)path;
}

enum cfg_kind {
    CFG_HS,          /* HS256 only */
    CFG_HS_ALL,      /* HS256, HS384, HS512 */
    CFG_HS_NOEXP,    /* HS256, exp optional */
    CFG_HS_ISSAUD,   /* HS256 with iss and aud checks */
    CFG_RS,          /* RS256 with keys "a" and "b" (rotation) */
    CFG_RS_ONE,      /* RS256 with key A and no kid */
    CFG_RS_HS,       /* RS256 (key "a") and HS256 with the secret */
    CFG_ES,          /* ES256 with key "e" */
    CFG_MIXED,       /* RS256 key "a" and ES256 key "e" */
};

static void tcfg_kind(struct tcfg *t, enum cfg_kind kind)
{
    tcfg_init(t);
    switch (kind) {
    case CFG_HS:
        tcfg_alg(t, "HS256");
        break;
    case CFG_HS_ALL:
        tcfg_alg(t, "HS256");
        tcfg_alg(t, "HS384");
        tcfg_alg(t, "HS512");
        break;
    case CFG_HS_NOEXP:
        tcfg_alg(t, "HS256");
        t->c.jwt_require_exp = false;
        break;
    case CFG_HS_ISSAUD:
        tcfg_alg(t, "HS256");
        t->c.jwt_issuer = ISS;
        t->c.jwt_audience = AUD;
        break;
    case CFG_RS:
        tcfg_alg(t, "RS256");
        tcfg_key(t, "a", rsa_a.pub_path);
        tcfg_key(t, "b", rsa_b.pub_path);
        break;
    case CFG_RS_ONE:
        tcfg_alg(t, "RS256");
        tcfg_key(t, NULL, rsa_a.pub_path);
        break;
    case CFG_RS_HS:
        tcfg_alg(t, "RS256");
        tcfg_alg(t, "HS256");
        tcfg_key(t, "a", rsa_a.pub_path);
        break;
    case CFG_ES:
        tcfg_alg(t, "ES256");
        tcfg_key(t, "e", ec_e.pub_path);
        break;
    case CFG_MIXED:
        tcfg_alg(t, "RS256");
        tcfg_alg(t, "ES256");
        tcfg_key(t, "a", rsa_a.pub_path);
        tcfg_key(t, "e", ec_e.pub_path);
        break;
    }
}

static struct auth_ctx *ctx_from(const struct tcfg *t)
{
    char err[512] = "";
    struct auth_ctx *ctx = auth_new(&t->c, err, sizeof err);
    ck_assert_msg(ctx != NULL, "auth_new failed: %s", err);
    return ctx;
}

static struct auth_ctx *ctx_for(enum cfg_kind kind)
{
    struct tcfg t;
    tcfg_kind(&t, kind);
    return ctx_from(&t);
}

/* ------------------------------------------------------------------ hand-made tokens */

/* Independent of the code under test: OpenSSL's standard base64, then the URL alphabet. */
static char *b64url(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url(s, strlen(s));
}

static char *join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *s = malloc(n);
    snprintf(s, n, "%s.%s.%s", a, b, c);
    return s;
}

enum sig {
    SIG_SECRET,        /* HMAC with the configured secret */
    SIG_WRONG_SECRET,  /* HMAC with another secret */
    SIG_RSA_PEM,       /* HMAC keyed with key A's public PEM text (the key-confusion attack) */
    SIG_EMPTY,         /* unsigned: "header.payload." */
    SIG_FAKE,          /* 32 arbitrary bytes */
};

static char *hand_token(const char *header, const char *payload, enum sig sig, int sha)
{
    char *h = b64url_str(header), *p = b64url_str(payload);
    size_t in_len = strlen(h) + 1 + strlen(p);
    char *input = malloc(in_len + 1);
    snprintf(input, in_len + 1, "%s.%s", h, p);

    const EVP_MD *md = sha == 384 ? EVP_sha384() : sha == 512 ? EVP_sha512() : EVP_sha256();
    const char *key = sig == SIG_SECRET ? SECRET
                      : sig == SIG_WRONG_SECRET ? "a different secret, also 32 bytes long"
                                                : rsa_a.pub_pem;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char *s;
    if (sig == SIG_EMPTY) {
        s = strdup("");
    } else if (sig == SIG_FAKE) {
        s = b64url_str("not a signature, just 32 bytes!!");
    } else {
        HMAC(md, key, (int)strlen(key), (unsigned char *)input, in_len, mac, &mac_len);
        s = b64url(mac, mac_len);
    }
    char *tok = join3(h, p, s);
    free(h);
    free(p);
    free(s);
    free(input);
    return tok;
}

/* ------------------------------------------------------------------ libjwt-signed tokens */

static char *libjwt_token(jwt_alg_t alg, const char *key, const char *kid, const char *sub,
                          const char *did, long exp)
{
    jwt_t *jwt = NULL;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    ck_assert_int_eq(jwt_add_grant(jwt, "sub", sub), 0);
    ck_assert_int_eq(jwt_add_grant(jwt, "did", did), 0);
    ck_assert_int_eq(jwt_add_grant_int(jwt, "iat", NOW), 0);
    ck_assert_int_eq(jwt_add_grant_int(jwt, "exp", exp), 0);
    if (kid)
        ck_assert_int_eq(jwt_add_header(jwt, "kid", kid), 0);
    ck_assert_int_eq(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *tok = jwt_encode_str(jwt);
    ck_assert_ptr_nonnull(tok);
    jwt_free(jwt);
    return tok;
}

static char *pk_token(jwt_alg_t alg, const struct keypair *k, const char *kid)
{
    return libjwt_token(alg, k->priv_pem, kid, "alice", "dev-1", NOW + 600);
}

/* Runs the verifier and checks the outcome: expect == NULL means accepted as alice/dev-1. */
static void expect_verify(const struct auth_ctx *ctx, const char *tok, const char *expect,
                          const char *what)
{
    struct identity id;
    char msg[256] = "";
    bool ok = auth_jwt_verify(ctx, tok, NOW, &id, msg, sizeof msg);
    if (!expect) {
        ck_assert_msg(ok, "%s: rejected with \"%s\"", what, msg);
        ck_assert_str_eq(id.user, "alice");
        ck_assert_str_eq(id.device, "dev-1");
    } else {
        ck_assert_msg(!ok, "%s: accepted, expected \"%s\"", what, expect);
        ck_assert_msg(strcmp(msg, expect) == 0, "%s: message \"%s\", expected \"%s\"", what, msg,
                      expect);
    }
}

/* ------------------------------------------------------------------ the hostile-token table */

#define H256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define H384 "{\"alg\":\"HS384\",\"typ\":\"JWT\"}"
#define H512 "{\"alg\":\"HS512\",\"typ\":\"JWT\"}"
#define ID "\"sub\":\"alice\",\"did\":\"dev-1\""
#define P_OK "{" ID ",\"iat\":1700000000,\"exp\":1700000600}"
#define P_ISSAUD(iss, aud) "{" ID ",\"exp\":1700000600,\"iss\":" iss ",\"aud\":" aud "}"

struct row {
    const char *name;
    enum cfg_kind cfg;
    const char *header;
    const char *payload;
    enum sig sig;
    int sha;                  /* HMAC size, 256 when 0 */
    const char *expect;       /* exact message; NULL = accepted as alice/dev-1 */
};

static const struct row rows[] = {
    /* algorithm pinning */
    { "alg none, unsigned", CFG_HS, "{\"alg\":\"none\"}", P_OK, SIG_EMPTY, 0, "malformed token" },
    { "alg none, fake signature", CFG_HS, "{\"alg\":\"none\"}", P_OK, SIG_FAKE, 0,
      "algorithm none not allowed" },
    { "alg none, signed with the secret", CFG_HS, "{\"alg\":\"none\"}", P_OK, SIG_SECRET, 0,
      "algorithm none not allowed" },
    { "alg NONE, RS256 configured", CFG_RS, "{\"alg\":\"NONE\"}", P_OK, SIG_FAKE, 0,
      "algorithm NONE not allowed" },
    { "HS256 keyed with the RSA public PEM, RS256 configured", CFG_RS, H256, P_OK, SIG_RSA_PEM, 0,
      "algorithm HS256 not allowed" },
    { "HS256 keyed with the RSA public PEM, RS256+HS256 configured", CFG_RS_HS, H256, P_OK,
      SIG_RSA_PEM, 0, "invalid token signature" },
    { "RS256 header, HMAC keyed with the RSA public PEM", CFG_RS,
      "{\"alg\":\"RS256\",\"kid\":\"a\"}", P_OK, SIG_RSA_PEM, 0, "invalid token signature" },
    { "HS384 when only HS256 is configured", CFG_HS, H384, P_OK, SIG_SECRET, 384,
      "algorithm HS384 not allowed" },
    { "ES256 when only HS256 is configured", CFG_HS, "{\"alg\":\"ES256\"}", P_OK, SIG_FAKE, 0,
      "algorithm ES256 not allowed" },
    { "alg names are case-sensitive", CFG_HS, "{\"alg\":\"hs256\"}", P_OK, SIG_SECRET, 0,
      "algorithm hs256 not allowed" },
    { "alg with odd characters is not echoed", CFG_HS, "{\"alg\":\"<script>\"}", P_OK, SIG_FAKE,
      0, "algorithm not allowed" },
    { "alg missing", CFG_HS, "{\"typ\":\"JWT\"}", P_OK, SIG_SECRET, 0, "malformed token" },
    { "alg not a string", CFG_HS, "{\"alg\":256}", P_OK, SIG_SECRET, 0, "malformed token" },
    { "crit header", CFG_HS, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", P_OK,
      SIG_SECRET, 0, "unsupported critical header parameter" },

    /* signatures */
    { "wrong secret", CFG_HS, H256, P_OK, SIG_WRONG_SECRET, 0, "invalid token signature" },
    { "fake signature", CFG_HS, H256, P_OK, SIG_FAKE, 0, "invalid token signature" },
    { "HS384 hash under an HS256 header", CFG_HS_ALL, H256, P_OK, SIG_SECRET, 384,
      "invalid token signature" },
    { "RS256 fake signature, no kid", CFG_RS, "{\"alg\":\"RS256\"}", P_OK, SIG_FAKE, 0,
      "invalid token signature" },
    { "ES256 signature of the wrong size", CFG_ES, "{\"alg\":\"ES256\",\"kid\":\"e\"}", P_OK,
      SIG_FAKE, 0, "invalid token signature" },
    { "unknown kid", CFG_RS, "{\"alg\":\"RS256\",\"kid\":\"zzz\"}", P_OK, SIG_FAKE, 0,
      "unknown key id" },
    { "kid of a key of the other family", CFG_MIXED, "{\"alg\":\"ES256\",\"kid\":\"a\"}", P_OK,
      SIG_FAKE, 0, "unknown key id" },
    { "kid not a string", CFG_RS, "{\"alg\":\"RS256\",\"kid\":1}", P_OK, SIG_FAKE, 0,
      "malformed token" },

    /* structure of header and payload */
    { "header not JSON", CFG_HS, "not json", P_OK, SIG_SECRET, 0, "malformed token" },
    { "header a JSON array", CFG_HS, "[\"HS256\"]", P_OK, SIG_SECRET, 0, "malformed token" },
    { "header with trailing bytes", CFG_HS, H256 "x", P_OK, SIG_SECRET, 0, "malformed token" },
    { "payload not JSON", CFG_HS, H256, "not json", SIG_SECRET, 0, "malformed token" },
    { "payload a JSON array", CFG_HS, H256, "[1,2]", SIG_SECRET, 0, "malformed token" },
    { "payload with trailing bytes", CFG_HS, H256, P_OK " {}", SIG_SECRET, 0, "malformed token" },
    { "payload in lenient JSON", CFG_HS, H256, "{'sub':'alice','did':'dev-1','exp':1700000600}",
      SIG_SECRET, 0, "malformed token" },

    /* exp / nbf, leeway 30 s around NOW */
    { "expired", CFG_HS, H256, "{" ID ",\"exp\":1699999000}", SIG_SECRET, 0, "token expired" },
    { "expired by leeway + 1 s", CFG_HS, H256, "{" ID ",\"exp\":1699999969}", SIG_SECRET, 0,
      "token expired" },
    { "expired exactly leeway ago", CFG_HS, H256, "{" ID ",\"exp\":1699999970}", SIG_SECRET, 0,
      NULL },
    { "expired but within leeway", CFG_HS, H256, "{" ID ",\"exp\":1699999990}", SIG_SECRET, 0,
      NULL },
    { "fractional exp", CFG_HS, H256, "{" ID ",\"exp\":1700000600.5}", SIG_SECRET, 0, NULL },
    { "fractional exp expired", CFG_HS, H256, "{" ID ",\"exp\":1699999969.5}", SIG_SECRET, 0,
      "token expired" },
    { "exp missing, required", CFG_HS, H256, "{" ID "}", SIG_SECRET, 0, "missing claim exp" },
    { "exp missing, not required", CFG_HS_NOEXP, H256, "{" ID "}", SIG_SECRET, 0, NULL },
    { "exp a string", CFG_HS, H256, "{" ID ",\"exp\":\"1700000600\"}", SIG_SECRET, 0,
      "claim exp must be a number" },
    { "exp null", CFG_HS, H256, "{" ID ",\"exp\":null}", SIG_SECRET, 0,
      "claim exp must be a number" },
    { "exp a string, not required", CFG_HS_NOEXP, H256, "{" ID ",\"exp\":\"soon\"}", SIG_SECRET,
      0, "claim exp must be a number" },
    { "nbf in the future", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":1700000100}",
      SIG_SECRET, 0, "token not yet valid" },
    { "nbf leeway + 1 s ahead", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":1700000031}",
      SIG_SECRET, 0, "token not yet valid" },
    { "nbf exactly leeway ahead", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":1700000030}",
      SIG_SECRET, 0, NULL },
    { "nbf in the future within leeway", CFG_HS, H256,
      "{" ID ",\"exp\":1700000600,\"nbf\":1700000020}", SIG_SECRET, 0, NULL },
    { "nbf in the past", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":1690000000}",
      SIG_SECRET, 0, NULL },
    { "nbf a string", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":\"now\"}", SIG_SECRET, 0,
      "claim nbf must be a number" },

    /* Time claims that are numbers to json-c but no usable time: NaN never compares, json-c reads
     * 1e400 as infinity and clamps integers past 64 bits to INT64_MIN/INT64_MAX. */
#define BAD_TIME(c) "claim " c " must be a finite number within the 64-bit time range"
    { "exp NaN", CFG_HS, H256, "{" ID ",\"exp\":NaN}", SIG_SECRET, 0, BAD_TIME("exp") },
    { "exp Infinity", CFG_HS, H256, "{" ID ",\"exp\":Infinity}", SIG_SECRET, 0, BAD_TIME("exp") },
    { "exp -Infinity", CFG_HS, H256, "{" ID ",\"exp\":-Infinity}", SIG_SECRET, 0,
      BAD_TIME("exp") },
    { "exp 1e400", CFG_HS, H256, "{" ID ",\"exp\":1e400}", SIG_SECRET, 0, BAD_TIME("exp") },
    { "exp -1e400", CFG_HS, H256, "{" ID ",\"exp\":-1e400}", SIG_SECRET, 0, BAD_TIME("exp") },
    { "exp 1e300", CFG_HS, H256, "{" ID ",\"exp\":1e300}", SIG_SECRET, 0, BAD_TIME("exp") },
    { "exp 2^63 as a double", CFG_HS, H256, "{" ID ",\"exp\":9223372036854775808.0}", SIG_SECRET,
      0, BAD_TIME("exp") },
    { "exp past 64 bits", CFG_HS, H256, "{" ID ",\"exp\":99999999999999999999}", SIG_SECRET, 0,
      BAD_TIME("exp") },
    { "exp UINT64_MAX", CFG_HS, H256, "{" ID ",\"exp\":18446744073709551615}", SIG_SECRET, 0,
      BAD_TIME("exp") },
    { "exp INT64_MAX", CFG_HS, H256, "{" ID ",\"exp\":9223372036854775807}", SIG_SECRET, 0,
      BAD_TIME("exp") },
    { "exp below -2^63", CFG_HS, H256, "{" ID ",\"exp\":-99999999999999999999}", SIG_SECRET, 0,
      BAD_TIME("exp") },
    { "exp NaN, not required", CFG_HS_NOEXP, H256, "{" ID ",\"exp\":NaN}", SIG_SECRET, 0,
      BAD_TIME("exp") },
    { "nbf NaN", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":NaN}", SIG_SECRET, 0,
      BAD_TIME("nbf") },
    { "nbf -Infinity", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":-Infinity}", SIG_SECRET,
      0, BAD_TIME("nbf") },
    { "nbf -1e400", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":-1e400}", SIG_SECRET, 0,
      BAD_TIME("nbf") },
    { "nbf below -2^63", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"nbf\":-99999999999999999999}",
      SIG_SECRET, 0, BAD_TIME("nbf") },
    { "iat NaN", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"iat\":NaN}", SIG_SECRET, 0,
      BAD_TIME("iat") },
    { "iat Infinity", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"iat\":Infinity}", SIG_SECRET, 0,
      BAD_TIME("iat") },
    { "iat 1e400", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"iat\":1e400}", SIG_SECRET, 0,
      BAD_TIME("iat") },
    { "iat past 64 bits", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"iat\":99999999999999999999}",
      SIG_SECRET, 0, BAD_TIME("iat") },
    { "iat a string", CFG_HS, H256, "{" ID ",\"exp\":1700000600,\"iat\":\"yesterday\"}",
      SIG_SECRET, 0, "claim iat must be a number" },
    /* In range: accepted, fractional seconds included (RFC 7519 §2 NumericDate). */
    { "exp a whole number written as a double", CFG_HS, H256, "{" ID ",\"exp\":1.7000006e9}",
      SIG_SECRET, 0, NULL },
    { "exp far in the future", CFG_HS, H256, "{" ID ",\"exp\":9223372036854775806}", SIG_SECRET, 0,
      NULL },
    { "exp the largest double below 2^63", CFG_HS, H256, "{" ID ",\"exp\":9223372036854774784.0}",
      SIG_SECRET, 0, NULL },
    { "iat in the future is not checked", CFG_HS, H256,
      "{" ID ",\"exp\":1700000600,\"iat\":1800000000}", SIG_SECRET, 0, NULL },
    { "fractional iat and nbf", CFG_HS, H256,
      "{" ID ",\"exp\":1700000600,\"iat\":1699999999.25,\"nbf\":1699999999.25}", SIG_SECRET, 0,
      NULL },
#undef BAD_TIME

    /* sub / did */
    { "sub missing", CFG_HS, H256, "{\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "missing claim sub" },
    { "sub empty", CFG_HS, H256, "{\"sub\":\"\",\"did\":\"dev-1\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim sub must be a non-empty string" },
    { "sub a number", CFG_HS, H256, "{\"sub\":42,\"did\":\"dev-1\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim sub must be a non-empty string" },
    { "sub null", CFG_HS, H256, "{\"sub\":null,\"did\":\"dev-1\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim sub must be a non-empty string" },
    { "sub an array", CFG_HS, H256, "{\"sub\":[\"alice\"],\"did\":\"dev-1\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim sub must be a non-empty string" },
    { "sub with a NUL", CFG_HS, H256,
      "{\"sub\":\"alice\\u0000bob\",\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim sub must be a non-empty string" },
    { "did missing", CFG_HS, H256, "{\"sub\":\"alice\",\"exp\":1700000600}", SIG_SECRET, 0,
      "missing claim did" },
    { "did empty", CFG_HS, H256, "{\"sub\":\"alice\",\"did\":\"\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim did must be a non-empty string" },
    { "did a number", CFG_HS, H256, "{\"sub\":\"alice\",\"did\":7,\"exp\":1700000600}",
      SIG_SECRET, 0, "claim did must be a non-empty string" },
    { "did a boolean", CFG_HS, H256, "{\"sub\":\"alice\",\"did\":true,\"exp\":1700000600}",
      SIG_SECRET, 0, "claim did must be a non-empty string" },
    /* valid UTF-8 without control characters (the same check as trusted_header's, tested in
     * full there) */
    { "sub not UTF-8", CFG_HS, H256, "{\"sub\":\"al\xffice\",\"did\":\"dev-1\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim sub is not valid UTF-8" },
    { "sub an overlong '/'", CFG_HS, H256,
      "{\"sub\":\"\xc0\xaf\",\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim sub is not valid UTF-8" },
    { "sub an encoded surrogate", CFG_HS, H256,
      "{\"sub\":\"\xed\xa0\x80\",\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim sub is not valid UTF-8" },
    { "sub past U+10FFFF", CFG_HS, H256,
      "{\"sub\":\"\xf4\x90\x80\x80\",\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim sub is not valid UTF-8" },
    { "sub with a newline", CFG_HS, H256,
      "{\"sub\":\"alice\\ninfo forged\",\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim sub contains a control character" },
    { "sub with DEL", CFG_HS, H256, "{\"sub\":\"alice\\u007f\",\"did\":\"dev-1\",\"exp\":1700000600}",
      SIG_SECRET, 0, "claim sub contains a control character" },
    { "sub with a C1 control (NEL)", CFG_HS, H256,
      "{\"sub\":\"alice\\u0085\",\"did\":\"dev-1\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim sub contains a control character" },
    { "did with an escape sequence", CFG_HS, H256,
      "{\"sub\":\"alice\",\"did\":\"\\u001b[31m\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim did contains a control character" },
    { "did truncated UTF-8", CFG_HS, H256,
      "{\"sub\":\"alice\",\"did\":\"dev\xe2\x82\",\"exp\":1700000600}", SIG_SECRET, 0,
      "claim did is not valid UTF-8" },

    /* iss / aud */
    { "iss and aud match", CFG_HS_ISSAUD, H256, P_ISSAUD("\"" ISS "\"", "\"" AUD "\""),
      SIG_SECRET, 0, NULL },
    { "wrong iss", CFG_HS_ISSAUD, H256, P_ISSAUD("\"https://evil.example\"", "\"" AUD "\""),
      SIG_SECRET, 0, "invalid issuer" },
    { "iss a prefix of the configured one", CFG_HS_ISSAUD, H256,
      P_ISSAUD("\"https://issuer\"", "\"" AUD "\""), SIG_SECRET, 0, "invalid issuer" },
    { "iss a number", CFG_HS_ISSAUD, H256, P_ISSAUD("1", "\"" AUD "\""), SIG_SECRET, 0,
      "invalid issuer" },
    { "iss missing", CFG_HS_ISSAUD, H256, "{" ID ",\"exp\":1700000600,\"aud\":\"" AUD "\"}",
      SIG_SECRET, 0, "missing claim iss" },
    { "wrong aud string", CFG_HS_ISSAUD, H256, P_ISSAUD("\"" ISS "\"", "\"someone-else\""),
      SIG_SECRET, 0, "invalid audience" },
    { "wrong aud array", CFG_HS_ISSAUD, H256, P_ISSAUD("\"" ISS "\"", "[\"a\",\"b\"]"),
      SIG_SECRET, 0, "invalid audience" },
    { "empty aud array", CFG_HS_ISSAUD, H256, P_ISSAUD("\"" ISS "\"", "[]"), SIG_SECRET, 0,
      "invalid audience" },
    { "aud a number", CFG_HS_ISSAUD, H256, P_ISSAUD("\"" ISS "\"", "5"), SIG_SECRET, 0,
      "invalid audience" },
    { "aud array containing it", CFG_HS_ISSAUD, H256,
      P_ISSAUD("\"" ISS "\"", "[\"other\",1,\"" AUD "\"]"), SIG_SECRET, 0, NULL },
    { "aud missing", CFG_HS_ISSAUD, H256, "{" ID ",\"exp\":1700000600,\"iss\":\"" ISS "\"}",
      SIG_SECRET, 0, "missing claim aud" },
    { "iss and aud ignored when not configured", CFG_HS, H256,
      P_ISSAUD("\"anyone\"", "[\"anything\"]"), SIG_SECRET, 0, NULL },

    /* accepted HMAC tokens */
    { "valid HS256", CFG_HS, H256, P_OK, SIG_SECRET, 0, NULL },
    { "valid HS256 with a kid", CFG_HS, "{\"alg\":\"HS256\",\"kid\":\"whatever\"}", P_OK,
      SIG_SECRET, 0, NULL },
    { "valid HS384", CFG_HS_ALL, H384, P_OK, SIG_SECRET, 384, NULL },
    { "valid HS512", CFG_HS_ALL, H512, P_OK, SIG_SECRET, 512, NULL },
    { "valid HS256 next to RS256", CFG_RS_HS, H256, P_OK, SIG_SECRET, 0, NULL },
};

static void assert_not_echoed(const char *msg, const char *tok)
{
    char *copy = strdup(tok);
    for (char *save = NULL, *part = strtok_r(copy, ".", &save); part;
         part = strtok_r(NULL, ".", &save))
        ck_assert_msg(strlen(part) < 4 || !strstr(msg, part), "message echoes the token: %s", msg);
    free(copy);
}

START_TEST(test_table)
{
    const struct row *r = &rows[_i];
    struct auth_ctx *ctx = ctx_for(r->cfg);
    char *tok = hand_token(r->header, r->payload, r->sig, r->sha);
    expect_verify(ctx, tok, r->expect, r->name);
    if (r->expect) {
        struct identity id;
        char msg[256];
        auth_jwt_verify(ctx, tok, NOW, &id, msg, sizeof msg);
        assert_not_echoed(msg, tok);
    }
    free(tok);
    auth_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ malformed token text */

static const char *const malformed[] = {
    "",
    ".",
    "..",
    "...",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0",                 /* two parts */
    "eyJhbGciOiJIUzI1NiJ9",                                  /* one part */
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln.c2ln",        /* four parts */
    ".eyJzdWIiOiJhIn0.c2ln",                                 /* empty header */
    "eyJhbGciOiJIUzI1NiJ9..c2ln",                            /* empty payload */
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.",                 /* empty signature */
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0=.c2ln",            /* padding */
    "eyJhbGciOiJIUzI1NiJ9.eyJz+WIiOiJhIn0.c2ln",             /* standard-alphabet '+' */
    "eyJhbGciOiJIUzI1NiJ9.eyJz/WIiOiJhIn0.c2ln",             /* standard-alphabet '/' */
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2l*",             /* not base64 at all */
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi OiJhIn0.c2ln",            /* whitespace */
    "eyJhbGciOiJIUzI1NiJ9.eyJzd.c2ln",                       /* impossible length (4n+1) */
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",      /* scheme left on */
};

START_TEST(test_malformed)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    expect_verify(ctx, malformed[_i], "malformed token", malformed[_i]);
    auth_free(ctx);
}
END_TEST

static char *valid_hs256(void)
{
    return hand_token(H256, P_OK, SIG_SECRET, 0);
}

START_TEST(test_flipped_payload_byte)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    char *tok = valid_hs256();
    expect_verify(ctx, tok, NULL, "untouched");
    char *c = strchr(tok, '.') + 5;
    *c = *c == 'A' ? 'B' : 'A';
    expect_verify(ctx, tok, "invalid token signature", "payload byte flipped");
    free(tok);
    auth_free(ctx);
}
END_TEST

START_TEST(test_flipped_signature_byte)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    char *tok = valid_hs256();
    char *c = strrchr(tok, '.') + 3;
    *c = *c == 'A' ? 'B' : 'A';
    expect_verify(ctx, tok, "invalid token signature", "signature byte flipped");
    free(tok);
    auth_free(ctx);
}
END_TEST

/* The last character of a 32-byte MAC carries 2 unused bits; setting one keeps the same bytes,
 * and the token must still be refused so each signature has one spelling. */
START_TEST(test_non_canonical_base64)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    char *tok = valid_hs256();
    char *last = tok + strlen(tok) - 1;
    size_t v = (size_t)(strchr(alphabet, *last) - alphabet);
    *last = alphabet[v ^ 1];
    expect_verify(ctx, tok, "malformed token", "non-canonical signature");
    free(tok);
    auth_free(ctx);
}
END_TEST

START_TEST(test_oversized)
{
    char pad[2000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    char payload[2200];
    snprintf(payload, sizeof payload, "{" ID ",\"exp\":1700000600,\"pad\":\"%s\"}", pad);
    char *tok = hand_token(H256, payload, SIG_SECRET, 0);
    long len = (long)strlen(tok);

    struct tcfg t;
    tcfg_kind(&t, CFG_HS);
    t.c.jwt_max_token_bytes = len;
    struct auth_ctx *ctx = ctx_from(&t);
    expect_verify(ctx, tok, NULL, "exactly at the limit");
    auth_free(ctx);

    t.c.jwt_max_token_bytes = len - 1;
    ctx = ctx_from(&t);
    expect_verify(ctx, tok, "token too large", "one byte over the limit");
    auth_free(ctx);
    free(tok);

    /* Well past the limit and not even a token: the size check comes first. */
    char *huge = malloc(MAX_TOKEN * 4);
    memset(huge, '.', MAX_TOKEN * 4 - 1);
    huge[MAX_TOKEN * 4 - 1] = '\0';
    ctx = ctx_for(CFG_HS);
    expect_verify(ctx, huge, "token too large", "huge");
    auth_free(ctx);
    free(huge);
}
END_TEST

START_TEST(test_identity_length)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    char name[IDENTITY_MAX + 1];
    char payload[3 * IDENTITY_MAX];

    memset(name, 'u', IDENTITY_MAX - 1);
    name[IDENTITY_MAX - 1] = '\0';
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"did\":\"%s\",\"exp\":1700000600}", name,
             name);
    char *tok = hand_token(H256, payload, SIG_SECRET, 0);
    struct identity id;
    char msg[256];
    ck_assert_msg(auth_jwt_verify(ctx, tok, NOW, &id, msg, sizeof msg), "%s", msg);
    ck_assert_str_eq(id.user, name);
    ck_assert_str_eq(id.device, name);
    free(tok);

    memset(name, 'u', IDENTITY_MAX);
    name[IDENTITY_MAX] = '\0';
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"did\":\"d\",\"exp\":1700000600}", name);
    tok = hand_token(H256, payload, SIG_SECRET, 0);
    expect_verify(ctx, tok, "claim sub is longer than 255 bytes", "long sub");
    free(tok);
    snprintf(payload, sizeof payload, "{\"sub\":\"s\",\"did\":\"%s\",\"exp\":1700000600}", name);
    tok = hand_token(H256, payload, SIG_SECRET, 0);
    expect_verify(ctx, tok, "claim did is longer than 255 bytes", "long did");
    free(tok);
    auth_free(ctx);
}
END_TEST

/* Any valid UTF-8 without control characters is an identity, as sent. */
START_TEST(test_identity_utf8)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    const char *user = "Zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80 \xe7\x94\xa8\xe6\x88\xb7";
    const char *device = "\xc2\xa0\xef\xbf\xbd\xf4\x8f\xbf\xbf";
    char payload[256];
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\",\"did\":\"%s\",\"exp\":1700000600}", user,
             device);
    char *tok = hand_token(H256, payload, SIG_SECRET, 0);
    struct identity id;
    char msg[256] = "";
    ck_assert_msg(auth_jwt_verify(ctx, tok, NOW, &id, msg, sizeof msg), "%s", msg);
    ck_assert_str_eq(id.user, user);
    ck_assert_str_eq(id.device, device);
    free(tok);
    auth_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ libjwt-signed tokens */

START_TEST(test_libjwt_hmac)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS_ALL);
    const jwt_alg_t algs[] = { JWT_ALG_HS256, JWT_ALG_HS384, JWT_ALG_HS512 };
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        char *tok = libjwt_token(algs[i], SECRET, NULL, "alice", "dev-1", NOW + 600);
        expect_verify(ctx, tok, NULL, jwt_alg_str(algs[i]));
        free(tok);
        tok = libjwt_token(algs[i], SECRET, NULL, "alice", "dev-1", NOW - 3600);
        expect_verify(ctx, tok, "token expired", jwt_alg_str(algs[i]));
        free(tok);
    }
    auth_free(ctx);
}
END_TEST

START_TEST(test_rs256_rotation)
{
    struct auth_ctx *ctx = ctx_for(CFG_RS);
    struct {
        const struct keypair *key;
        const char *kid;
        const char *expect;
        const char *what;
    } cases[] = {
        { &rsa_a, "a", NULL, "key A, kid a" },
        { &rsa_b, "b", NULL, "key B, kid b" },
        { &rsa_a, "b", "invalid token signature", "key A claiming kid b" },
        { &rsa_b, "a", "invalid token signature", "key B claiming kid a" },
        { &rsa_a, NULL, NULL, "key A, no kid" },
        { &rsa_b, NULL, NULL, "key B, no kid" },
        { &rsa_a, "c", "unknown key id", "key A, unknown kid" },
        { &rsa_small, NULL, "invalid token signature", "unconfigured key, no kid" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = pk_token(JWT_ALG_RS256, cases[i].key, cases[i].kid);
        expect_verify(ctx, tok, cases[i].expect, cases[i].what);
        free(tok);
    }
    auth_free(ctx);
}
END_TEST

START_TEST(test_rs256_single_key)
{
    struct auth_ctx *ctx = ctx_for(CFG_RS_ONE);
    char *tok = pk_token(JWT_ALG_RS256, &rsa_a, NULL);
    expect_verify(ctx, tok, NULL, "no kid");
    free(tok);
    /* A key configured without kid serves issuers that always send one. */
    tok = pk_token(JWT_ALG_RS256, &rsa_a, "issuer-key-1");
    expect_verify(ctx, tok, NULL, "kid, key configured without kid");
    free(tok);
    tok = pk_token(JWT_ALG_RS256, &rsa_b, NULL);
    expect_verify(ctx, tok, "invalid token signature", "other key");
    free(tok);
    auth_free(ctx);
}
END_TEST

START_TEST(test_rs256_claims_still_checked)
{
    struct auth_ctx *ctx = ctx_for(CFG_RS);
    char *tok = libjwt_token(JWT_ALG_RS256, rsa_a.priv_pem, "a", "alice", "dev-1", NOW - 100);
    expect_verify(ctx, tok, "token expired", "expired RS256");
    free(tok);
    tok = libjwt_token(JWT_ALG_RS256, rsa_a.priv_pem, "a", "", "dev-1", NOW + 100);
    expect_verify(ctx, tok, "claim sub must be a non-empty string", "empty sub RS256");
    free(tok);
    auth_free(ctx);
}
END_TEST

START_TEST(test_es256)
{
    struct auth_ctx *ctx = ctx_for(CFG_ES);
    char *tok = pk_token(JWT_ALG_ES256, &ec_e, "e");
    expect_verify(ctx, tok, NULL, "ES256 kid e");
    free(tok);
    tok = pk_token(JWT_ALG_ES256, &ec_e, NULL);
    expect_verify(ctx, tok, NULL, "ES256 no kid");
    free(tok);
    tok = pk_token(JWT_ALG_ES256, &ec_other, "e");
    expect_verify(ctx, tok, "invalid token signature", "ES256 other key claiming kid e");
    free(tok);
    tok = pk_token(JWT_ALG_RS256, &rsa_a, NULL);
    expect_verify(ctx, tok, "algorithm RS256 not allowed", "RS256 when only ES256");
    free(tok);
    auth_free(ctx);

    ctx = ctx_for(CFG_RS);
    tok = pk_token(JWT_ALG_ES256, &ec_e, "a");
    expect_verify(ctx, tok, "algorithm ES256 not allowed", "ES256 when only RS256");
    free(tok);
    auth_free(ctx);
}
END_TEST

START_TEST(test_mixed_families)
{
    struct auth_ctx *ctx = ctx_for(CFG_MIXED);
    char *tok = pk_token(JWT_ALG_RS256, &rsa_a, "a");
    expect_verify(ctx, tok, NULL, "RS256 kid a");
    free(tok);
    tok = pk_token(JWT_ALG_ES256, &ec_e, "e");
    expect_verify(ctx, tok, NULL, "ES256 kid e");
    free(tok);
    tok = pk_token(JWT_ALG_ES256, &ec_e, NULL);
    expect_verify(ctx, tok, NULL, "ES256 no kid among mixed keys");
    free(tok);
    tok = pk_token(JWT_ALG_RS256, &rsa_a, "e");
    expect_verify(ctx, tok, "unknown key id", "RS256 naming the EC key");
    free(tok);
    auth_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ auth_new */

/* The configuration's defaults (with a secret) accept all three HMAC algorithms, as go-oversync
 * does, and nothing else. */
START_TEST(test_default_algorithms)
{
    struct config cfg;
    char err[512] = "";
    ck_assert_msg(config_load(&cfg, NULL, err, sizeof err), "%s", err);
    free(cfg.jwt_secret);
    cfg.jwt_secret = strdup(SECRET);
    struct auth_ctx *ctx = auth_new(&cfg, err, sizeof err);
    ck_assert_msg(ctx != NULL, "%s", err);
    const struct {
        const char *header;
        int sha;
    } ok[] = { { H256, 256 }, { H384, 384 }, { H512, 512 } };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *tok = hand_token(ok[i].header, P_OK, SIG_SECRET, ok[i].sha);
        expect_verify(ctx, tok, NULL, ok[i].header);
        free(tok);
    }
    char *tok = pk_token(JWT_ALG_RS256, &rsa_a, NULL);
    expect_verify(ctx, tok, "algorithm RS256 not allowed", "RS256 by default");
    free(tok);
    auth_free(ctx);
    config_free(&cfg);
}
END_TEST

/* How many times the log says the secret is too short for alg, given what auth_new wrote. */
static int short_secret_warnings(const char *log, const char *alg)
{
    char needle[32];
    snprintf(needle, sizeof needle, "asks for %s:", alg);
    int n = 0;
    for (const char *p = log; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* RFC 7518 §3.2: an HMAC key at least as long as the hash. A shorter secret still works, with one
 * warning per configured algorithm it is too short for, when the configuration is loaded. */
START_TEST(test_short_secret_warnings)
{
    static const struct {
        size_t secret_len;
        const char *algs;        /* comma-separated */
        int hs256, hs384, hs512; /* warnings expected */
    } cases[] = {
        { 20, "HS256,HS384,HS512", 1, 1, 1 },
        { 31, "HS256,HS384,HS512", 1, 1, 1 },
        { 32, "HS256,HS384,HS512", 0, 1, 1 },
        { 47, "HS256,HS384,HS512", 0, 1, 1 },
        { 48, "HS256,HS384,HS512", 0, 0, 1 },
        { 63, "HS256,HS384,HS512", 0, 0, 1 },
        { 64, "HS256,HS384,HS512", 0, 0, 0 },
        { 100, "HS256,HS384,HS512", 0, 0, 0 },
        { 40, "HS256", 0, 0, 0 },
        { 20, "HS512,HS512", 0, 0, 1 },
        { 40, "HS384,RS256", 0, 1, 0 },
    };
    log_setup(LOG_INFO, LOG_FORMAT_TEXT);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tcfg t;
        tcfg_init(&t);
        char algs[64];
        snprintf(algs, sizeof algs, "%s", cases[i].algs);
        for (char *save = NULL, *a = strtok_r(algs, ",", &save); a; a = strtok_r(NULL, ",", &save))
            tcfg_alg(&t, a);
        if (strstr(cases[i].algs, "RS256"))
            tcfg_key(&t, NULL, rsa_a.pub_path);
        char secret[128];
        memset(secret, 's', cases[i].secret_len);
        secret[cases[i].secret_len] = '\0';
        t.c.jwt_secret = secret;

        struct capture c;
        capture_start(&c);
        char err[512] = "";
        struct auth_ctx *ctx = auth_new(&t.c, err, sizeof err);
        char *log = capture_end(&c);
        ck_assert_msg(ctx != NULL, "%s", err);
        ck_assert_msg(short_secret_warnings(log, "HS256") == cases[i].hs256 &&
                          short_secret_warnings(log, "HS384") == cases[i].hs384 &&
                          short_secret_warnings(log, "HS512") == cases[i].hs512,
                      "secret of %zu bytes, %s: %s", cases[i].secret_len, cases[i].algs, log);
        /* a warning, with the sizes, and never the secret itself */
        if (cases[i].hs256 + cases[i].hs384 + cases[i].hs512 > 0) {
            char has[64];
            snprintf(has, sizeof has, "jwt_secret has %zu bytes", cases[i].secret_len);
            ck_assert_msg(strstr(log, " warn ") && strstr(log, has), "%s", log);
            ck_assert_msg(!strstr(log, "ssssssssssssssssssss"), "the secret is logged: %s", log);
        }
        free(log);
        auth_free(ctx);
    }
}
END_TEST

static void expect_new_fails(const struct tcfg *t, const char *needle1, const char *needle2)
{
    char err[512] = "";
    struct auth_ctx *ctx = auth_new(&t->c, err, sizeof err);
    ck_assert_msg(ctx == NULL, "auth_new accepted, expected an error with \"%s\"", needle1);
    ck_assert_msg(strstr(err, needle1), "error \"%s\" lacks \"%s\"", err, needle1);
    if (needle2)
        ck_assert_msg(strstr(err, needle2), "error \"%s\" lacks \"%s\"", err, needle2);
}

START_TEST(test_new_errors)
{
    struct tcfg t;

    tcfg_init(&t);
    expect_new_fails(&t, "jwt_algorithms is empty", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "HS256");
    t.c.jwt_secret = NULL;
    expect_new_fails(&t, "no jwt_secret", NULL);
    t.c.jwt_secret = "";
    expect_new_fails(&t, "no jwt_secret", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "none");
    expect_new_fails(&t, "unsupported algorithm \"none\"", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "RS512");
    expect_new_fails(&t, "unsupported algorithm \"RS512\"", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    expect_new_fails(&t, "jwt_public_key_files is empty", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "ES256");
    expect_new_fails(&t, "jwt_public_key_files is empty", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_key(&t, NULL, missing_path);
    expect_new_fails(&t, missing_path, "No such file");

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_key(&t, "a", rsa_a.pub_path);
    tcfg_key(&t, "g", garbage_path);
    expect_new_fails(&t, garbage_path, "no PEM public key");

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_key(&t, NULL, private_path);
    expect_new_fails(&t, private_path, "private key");

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_key(&t, NULL, rsa_small.pub_path);
    expect_new_fails(&t, rsa_small.pub_path, "1024 bits is too small");

    tcfg_init(&t);
    tcfg_alg(&t, "ES256");
    tcfg_key(&t, NULL, ec_p384.pub_path);
    expect_new_fails(&t, ec_p384.pub_path, "P-256");

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_key(&t, "a", rsa_a.pub_path);
    tcfg_key(&t, "e", ec_e.pub_path);
    expect_new_fails(&t, ec_e.pub_path, "ES256 is not in jwt_algorithms");

    tcfg_init(&t);
    tcfg_alg(&t, "ES256");
    tcfg_key(&t, NULL, rsa_a.pub_path);
    expect_new_fails(&t, rsa_a.pub_path, "RS256 is not in jwt_algorithms");

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_alg(&t, "ES256");
    tcfg_key(&t, "a", rsa_a.pub_path);
    expect_new_fails(&t, "no EC P-256 key", NULL);

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_key(&t, "same", rsa_a.pub_path);
    tcfg_key(&t, "same", rsa_b.pub_path);
    expect_new_fails(&t, "share kid \"same\"", rsa_b.pub_path);

    tcfg_init(&t);
    t.c.auth_mode = AUTH_MODE_TRUSTED_HEADER;
    t.c.trusted_device_param = "HTTP_X_DEVICE_ID";
    expect_new_fails(&t, "trusted_user_param", NULL);
    t.c.trusted_user_param = "REMOTE_USER";
    t.c.trusted_device_param = "";
    expect_new_fails(&t, "trusted_device_param", NULL);
}
END_TEST

START_TEST(test_new_ok)
{
    struct tcfg t;

    /* Algorithm names in the configuration are case-insensitive; in tokens they are not. */
    tcfg_init(&t);
    tcfg_alg(&t, "hs256");
    struct auth_ctx *ctx = ctx_from(&t);
    char *tok = valid_hs256();
    expect_verify(ctx, tok, NULL, "config alg in lower case");
    free(tok);
    auth_free(ctx);

    /* The context keeps its own copies: the configuration may be freed after a reload. */
    tcfg_kind(&t, CFG_HS_ISSAUD);
    char secret[] = SECRET, iss[] = ISS, aud[] = AUD;
    t.c.jwt_secret = secret;
    t.c.jwt_issuer = iss;
    t.c.jwt_audience = aud;
    ctx = ctx_from(&t);
    memset(secret, 'x', sizeof secret - 1);
    memset(iss, 'x', sizeof iss - 1);
    memset(aud, 'x', sizeof aud - 1);
    tok = hand_token(H256, P_ISSAUD("\"" ISS "\"", "\"" AUD "\""), SIG_SECRET, 0);
    expect_verify(ctx, tok, NULL, "after the config strings changed");
    free(tok);
    auth_free(ctx);

    /* trusted_header needs neither a secret nor keys. */
    tcfg_init(&t);
    t.c.auth_mode = AUTH_MODE_TRUSTED_HEADER;
    t.c.jwt_secret = NULL;
    t.c.trusted_user_param = "REMOTE_USER";
    t.c.trusted_device_param = "HTTP_X_DEVICE_ID";
    ctx = ctx_from(&t);
    auth_free(ctx);

    auth_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------ auth_authenticate */

struct kv {
    const char *name;
    const char *value;
};

static const char *kv_param(void *ud, const char *name)
{
    for (const struct kv *p = ud; p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p->value;
    return NULL;
}

static bool authenticate(const struct auth_ctx *ctx, const char *authorization,
                         struct identity *id, char *msg, size_t msglen)
{
    struct kv params[] = {
        { "REQUEST_METHOD", "POST" },
        { authorization ? "HTTP_AUTHORIZATION" : "HTTP_X_NOTHING", authorization },
        { NULL, NULL },
    };
    return auth_authenticate(ctx, kv_param, params, NOW, id, msg, msglen);
}

static void expect_header(const struct auth_ctx *ctx, const char *authorization,
                          const char *expect)
{
    struct identity id;
    char msg[256] = "";
    bool ok = authenticate(ctx, authorization, &id, msg, sizeof msg);
    if (!expect) {
        ck_assert_msg(ok, "\"%s\" rejected: %s", authorization, msg);
        ck_assert_str_eq(id.user, "alice");
        ck_assert_str_eq(id.device, "dev-1");
    } else {
        ck_assert_msg(!ok, "\"%s\" accepted", authorization);
        ck_assert_str_eq(msg, expect);
    }
}

START_TEST(test_authorization_header)
{
    struct auth_ctx *ctx = ctx_for(CFG_HS);
    char *tok = valid_hs256();
    char h[1024];

    expect_header(ctx, NULL, "missing Authorization header");
    expect_header(ctx, "", "missing Authorization header");
    expect_header(ctx, "Basic YWxpY2U6c2VjcmV0", "Authorization scheme must be Bearer");
    snprintf(h, sizeof h, "Token %s", tok);
    expect_header(ctx, h, "Authorization scheme must be Bearer");
    snprintf(h, sizeof h, "Bearer%s", tok);
    expect_header(ctx, h, "Authorization scheme must be Bearer");
    expect_header(ctx, tok, "Authorization scheme must be Bearer");
    expect_header(ctx, "Bearer", "missing bearer token");
    expect_header(ctx, "Bearer   ", "missing bearer token");

    snprintf(h, sizeof h, "Bearer %s", tok);
    expect_header(ctx, h, NULL);
    snprintf(h, sizeof h, "bearer %s", tok);
    expect_header(ctx, h, NULL);
    snprintf(h, sizeof h, "BEARER  %s", tok);
    expect_header(ctx, h, NULL);
    snprintf(h, sizeof h, "Bearer %s ", tok);
    expect_header(ctx, h, NULL);

    snprintf(h, sizeof h, "Bearer %s junk", tok);
    expect_header(ctx, h, "malformed token");
    char *bad = hand_token(H256, P_OK, SIG_WRONG_SECRET, 0);
    snprintf(h, sizeof h, "Bearer %s", bad);
    expect_header(ctx, h, "invalid token signature");
    free(bad);
    char *expired = hand_token(H256, "{" ID ",\"exp\":1600000000}", SIG_SECRET, 0);
    snprintf(h, sizeof h, "Bearer %s", expired);
    expect_header(ctx, h, "token expired");
    free(expired);

    free(tok);
    auth_free(ctx);
}
END_TEST

static struct auth_ctx *trusted_ctx(void)
{
    struct tcfg t;
    tcfg_init(&t);
    t.c.auth_mode = AUTH_MODE_TRUSTED_HEADER;
    t.c.trusted_user_param = "REMOTE_USER";
    t.c.trusted_device_param = "HTTP_X_DEVICE_ID";
    return ctx_from(&t);
}

static void expect_trusted(const struct auth_ctx *ctx, const struct kv *params, const char *expect,
                           const char *user, const char *device)
{
    struct identity id;
    char msg[256] = "";
    bool ok = auth_authenticate(ctx, kv_param, (void *)params, NOW, &id, msg, sizeof msg);
    if (!expect) {
        ck_assert_msg(ok, "rejected: %s", msg);
        ck_assert_str_eq(id.user, user);
        ck_assert_str_eq(id.device, device);
    } else {
        ck_assert_msg(!ok, "accepted, expected \"%s\"", expect);
        ck_assert_str_eq(msg, expect);
    }
}

START_TEST(test_trusted_header)
{
    struct auth_ctx *ctx = trusted_ctx();
    char *tok = valid_hs256();

    const struct kv present[] = {
        { "REMOTE_USER", "bob" }, { "HTTP_X_DEVICE_ID", "phone-2" }, { NULL, NULL } };
    expect_trusted(ctx, present, NULL, "bob", "phone-2");

    /* The Authorization header plays no part in this mode. */
    char h[1024];
    snprintf(h, sizeof h, "Bearer %s", tok);
    const struct kv with_jwt[] = { { "HTTP_AUTHORIZATION", h }, { "REMOTE_USER", "bob" },
                                   { "HTTP_X_DEVICE_ID", "phone-2" }, { NULL, NULL } };
    expect_trusted(ctx, with_jwt, NULL, "bob", "phone-2");
    const struct kv jwt_only[] = { { "HTTP_AUTHORIZATION", h }, { NULL, NULL } };
    expect_trusted(ctx, jwt_only, "missing trusted user parameter REMOTE_USER", NULL, NULL);

    const struct kv no_user[] = { { "HTTP_X_DEVICE_ID", "phone-2" }, { NULL, NULL } };
    expect_trusted(ctx, no_user, "missing trusted user parameter REMOTE_USER", NULL, NULL);
    const struct kv no_device[] = { { "REMOTE_USER", "bob" }, { NULL, NULL } };
    expect_trusted(ctx, no_device, "missing trusted device parameter HTTP_X_DEVICE_ID", NULL,
                   NULL);
    const struct kv empty_user[] = {
        { "REMOTE_USER", "" }, { "HTTP_X_DEVICE_ID", "phone-2" }, { NULL, NULL } };
    expect_trusted(ctx, empty_user, "trusted user parameter REMOTE_USER is empty", NULL, NULL);
    const struct kv empty_device[] = {
        { "REMOTE_USER", "bob" }, { "HTTP_X_DEVICE_ID", "" }, { NULL, NULL } };
    expect_trusted(ctx, empty_device, "trusted device parameter HTTP_X_DEVICE_ID is empty", NULL,
                   NULL);

    char longest[IDENTITY_MAX], too_long[IDENTITY_MAX + 1];
    memset(longest, 'u', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 'u', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    const struct kv max_user[] = {
        { "REMOTE_USER", longest }, { "HTTP_X_DEVICE_ID", longest }, { NULL, NULL } };
    expect_trusted(ctx, max_user, NULL, longest, longest);
    const struct kv long_user[] = {
        { "REMOTE_USER", too_long }, { "HTTP_X_DEVICE_ID", "d" }, { NULL, NULL } };
    expect_trusted(ctx, long_user, "trusted user parameter REMOTE_USER is longer than 255 bytes",
                   NULL, NULL);

    free(tok);
    auth_free(ctx);
}
END_TEST

/* The identity check shared by both authenticators: UTF-8 as RFC 3629 defines it (no overlong
 * forms, no surrogates, nothing past U+10FFFF) and no C0, DEL or C1 control character. */
static const struct {
    const char *value;
    const char *problem;     /* NULL = accepted */
} identities[] = {
    { "bob", NULL },
    { "user@example.com", NULL },
    { "with space and \"quotes\" = fine", NULL },
    { "~", NULL },
    { "caf\xc3\xa9", NULL },                      /* U+00E9 */
    { "\xc2\xa0", NULL },                         /* U+00A0, just after the C1 block */
    { "\xe2\x82\xac", NULL },                     /* U+20AC */
    { "\xed\x9f\xbf", NULL },                     /* U+D7FF, just before the surrogates */
    { "\xee\x80\x80", NULL },                     /* U+E000, just after them */
    { "\xef\xbf\xbd", NULL },                     /* U+FFFD */
    { "\xf0\x9f\x98\x80", NULL },                 /* U+1F600 */
    { "\xf4\x8f\xbf\xbf", NULL },                 /* U+10FFFF, the last code point */
    { "\xff", "is not valid UTF-8" },
    { "\xfe", "is not valid UTF-8" },
    { "a\x80" "b", "is not valid UTF-8" },         /* a continuation byte alone */
    { "\xc0\xaf", "is not valid UTF-8" },           /* overlong '/' */
    { "\xc1\xbf", "is not valid UTF-8" },           /* overlong U+007F */
    { "\xe0\x80\xaf", "is not valid UTF-8" },       /* overlong, 3 bytes */
    { "\xe0\x9f\xbf", "is not valid UTF-8" },       /* overlong U+07FF */
    { "\xf0\x80\x80\xaf", "is not valid UTF-8" },   /* overlong, 4 bytes */
    { "\xf0\x8f\xbf\xbf", "is not valid UTF-8" },   /* overlong U+FFFF */
    { "\xed\xa0\x80", "is not valid UTF-8" },       /* U+D800 */
    { "\xed\xbf\xbf", "is not valid UTF-8" },       /* U+DFFF */
    { "\xf4\x90\x80\x80", "is not valid UTF-8" },   /* U+110000 */
    { "\xf5\x80\x80\x80", "is not valid UTF-8" },
    { "\xf8\x88\x80\x80\x80", "is not valid UTF-8" }, /* the old 5-byte form */
    { "\xc3", "is not valid UTF-8" },               /* cut at the end */
    { "\xe2\x82", "is not valid UTF-8" },
    { "\xf0\x9f\x98", "is not valid UTF-8" },
    { "a\xc3(b", "is not valid UTF-8" },            /* cut in the middle */
    { "\xe2\x28\xa1", "is not valid UTF-8" },
    { "a\nb", "contains a control character" },
    { "a\rb", "contains a control character" },
    { "a\tb", "contains a control character" },
    { "\x01", "contains a control character" },
    { "\x1f", "contains a control character" },
    { "\x1b[31m", "contains a control character" },
    { "del\x7f", "contains a control character" },
    { "\xc2\x80", "contains a control character" },  /* U+0080 */
    { "\xc2\x85", "contains a control character" },  /* U+0085 NEL */
    { "\xc2\x9f", "contains a control character" },  /* U+009F */
};

START_TEST(test_trusted_identity_check)
{
    struct auth_ctx *ctx = trusted_ctx();
    const char *value = identities[_i].value, *problem = identities[_i].problem;
    char expect[128];

    const struct kv as_user[] = {
        { "REMOTE_USER", value }, { "HTTP_X_DEVICE_ID", "phone-2" }, { NULL, NULL } };
    snprintf(expect, sizeof expect, "trusted user parameter REMOTE_USER %s", problem ? problem : "");
    expect_trusted(ctx, as_user, problem ? expect : NULL, value, "phone-2");

    const struct kv as_device[] = {
        { "REMOTE_USER", "bob" }, { "HTTP_X_DEVICE_ID", value }, { NULL, NULL } };
    snprintf(expect, sizeof expect, "trusted device parameter HTTP_X_DEVICE_ID %s",
             problem ? problem : "");
    expect_trusted(ctx, as_device, problem ? expect : NULL, "bob", value);
    auth_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ verified-token cache */

/* A token verified in this second answers again from the cache; anything else is verified. */
START_TEST(test_verified_token_cache)
{
    struct tcfg t;
    tcfg_kind(&t, CFG_HS_ISSAUD);
    char err[256] = "";
    char *tok = auth_make_token(&t.c, "dana", "tablet", 3600, err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);
    struct auth_ctx *ctx = ctx_from(&t);
    ck_assert_ptr_nonnull(ctx->cache);
    struct identity id;
    char msg[256] = "";
    time_t now = time(NULL);
    ck_assert_msg(auth_jwt_verify(ctx, tok, now, &id, msg, sizeof msg), "%s", msg);
    memset(&id, 0, sizeof id);
    ck_assert_msg(auth_jwt_verify(ctx, tok, now, &id, msg, sizeof msg), "%s", msg);
    ck_assert_str_eq(id.user, "dana");
    ck_assert_str_eq(id.device, "tablet");

    /* The second answer came from the cache: with the key changed under it, the same bytes in the
     * same second still pass, and in the next second they are checked against the new key (the
     * secret itself: the HMAC contexts, which hold their own copy of it, are set aside meanwhile). */
    ck_assert_ptr_nonnull(ctx->hmac[JWT_HS256]);
    struct evp_mac_ctx_st *kept[JWT_N_ALGS];
    memcpy(kept, ctx->hmac, sizeof kept);
    memset(ctx->hmac, 0, sizeof ctx->hmac);
    ctx->secret[0] ^= 1;
    ck_assert(auth_jwt_verify(ctx, tok, now, &id, msg, sizeof msg));
    ck_assert(!auth_jwt_verify(ctx, tok, now + 1, &id, msg, sizeof msg));
    ctx->secret[0] ^= 1;
    ck_assert(auth_jwt_verify(ctx, tok, now + 2, &id, msg, sizeof msg));
    memcpy(ctx->hmac, kept, sizeof kept);
    /* and with the contexts, token after token, one of them forged: each judged on its own */
    char *bad = strdup(tok);
    bad[strlen(bad) - 20] = bad[strlen(bad) - 20] == 'A' ? 'B' : 'A';
    for (int i = 0; i < 6; i++) {
        ck_assert(auth_jwt_verify(ctx, tok, now + 10 + i, &id, msg, sizeof msg));
        ck_assert(!auth_jwt_verify(ctx, bad, now + 10 + i, &id, msg, sizeof msg));
    }
    free(bad);

    /* One signature byte changed, the token's last bytes (its cache slot) kept: verified, refused. */
    char *forged = strdup(tok);
    size_t n = strlen(forged);
    forged[n - 20] = forged[n - 20] == 'A' ? 'B' : 'A';
    ck_assert(!auth_jwt_verify(ctx, forged, now, &id, msg, sizeof msg));
    ck_assert(!auth_jwt_verify(ctx, forged, now, &id, msg, sizeof msg));   /* refusals are not kept */
    free(forged);

    /* Cached while valid, refused once expired. */
    ck_assert(auth_jwt_verify(ctx, tok, now, &id, msg, sizeof msg));
    ck_assert(!auth_jwt_verify(ctx, tok, now + 3600 + LEEWAY + 5, &id, msg, sizeof msg));
    ck_assert_str_eq(msg, "token expired");

    /* A token over JWT_CACHE_TOKEN_MAX bytes is verified every time. */
    char big[2048];
    snprintf(big, sizeof big, "{\"sub\":\"erin\",\"did\":\"pc\",\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%ld,\"pad\":\"%0900d\"}",
             ISS, AUD, (long)now + 600, 0);
    char *large = hand_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", big, SIG_SECRET, 256);
    ck_assert_uint_gt(strlen(large), JWT_CACHE_TOKEN_MAX);
    ck_assert_msg(auth_jwt_verify(ctx, large, now, &id, msg, sizeof msg), "%s", msg);
    ck_assert_str_eq(id.user, "erin");
    memset(ctx->hmac, 0, sizeof ctx->hmac);   /* the secret itself, as above */
    ctx->secret[0] ^= 1;
    ck_assert(!auth_jwt_verify(ctx, large, now, &id, msg, sizeof msg));
    ctx->secret[0] ^= 1;
    memcpy(ctx->hmac, kept, sizeof kept);
    free(large);

    auth_free(ctx);
    free(tok);
}
END_TEST

/* ------------------------------------------------------------------ auth_make_token */

START_TEST(test_make_token_round_trip)
{
    struct tcfg t;
    tcfg_kind(&t, CFG_HS_ISSAUD);
    char err[256] = "";
    char *tok = auth_make_token(&t.c, "carol/\"x\"", "laptop-3", 3600, err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);

    struct auth_ctx *ctx = ctx_from(&t);
    struct identity id;
    char msg[256] = "";
    time_t now = time(NULL);
    ck_assert_msg(auth_jwt_verify(ctx, tok, now, &id, msg, sizeof msg), "%s", msg);
    ck_assert_str_eq(id.user, "carol/\"x\"");
    ck_assert_str_eq(id.device, "laptop-3");
    ck_assert(!auth_jwt_verify(ctx, tok, now + 3600 + LEEWAY + 5, &id, msg, sizeof msg));
    ck_assert_str_eq(msg, "token expired");

    /* A second implementation agrees on the signature and the claims. */
    jwt_t *jwt = NULL;
    ck_assert_int_eq(jwt_decode(&jwt, tok, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    ck_assert_int_eq(jwt_get_alg(jwt), JWT_ALG_HS256);
    ck_assert_str_eq(jwt_get_grant(jwt, "sub"), "carol/\"x\"");
    ck_assert_str_eq(jwt_get_grant(jwt, "did"), "laptop-3");
    ck_assert_str_eq(jwt_get_grant(jwt, "iss"), ISS);
    ck_assert_str_eq(jwt_get_grant(jwt, "aud"), AUD);
    long iat = jwt_get_grant_int(jwt, "iat"), exp = jwt_get_grant_int(jwt, "exp");
    ck_assert_int_eq(exp - iat, 3600);
    ck_assert(iat >= now - 5 && iat <= now + 5);
    jwt_free(jwt);

    free(tok);
    auth_free(ctx);
}
END_TEST

START_TEST(test_make_token_first_hmac)
{
    struct tcfg t;
    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_alg(&t, "HS512");
    tcfg_alg(&t, "HS256");
    tcfg_key(&t, "a", rsa_a.pub_path);
    char err[256] = "";
    char *tok = auth_make_token(&t.c, "alice", "dev-1", 60, err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);

    jwt_t *jwt = NULL;
    ck_assert_int_eq(jwt_decode(&jwt, tok, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
    ck_assert_int_eq(jwt_get_alg(jwt), JWT_ALG_HS512);
    jwt_free(jwt);

    struct auth_ctx *ctx = ctx_from(&t);
    struct identity id;
    char msg[256] = "";
    ck_assert_msg(auth_jwt_verify(ctx, tok, time(NULL), &id, msg, sizeof msg), "%s", msg);
    ck_assert_str_eq(id.user, "alice");
    auth_free(ctx);
    free(tok);
}
END_TEST

START_TEST(test_make_token_errors)
{
    struct tcfg t;
    char err[256];

    tcfg_init(&t);
    tcfg_alg(&t, "RS256");
    tcfg_alg(&t, "ES256");
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "alice", "dev-1", 60, err, sizeof err));
    ck_assert_msg(strstr(err, "no HMAC algorithm"), "%s", err);

    tcfg_init(&t);
    tcfg_alg(&t, "HS256");
    t.c.jwt_secret = NULL;
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "alice", "dev-1", 60, err, sizeof err));
    ck_assert_msg(strstr(err, "jwt_secret"), "%s", err);

    tcfg_init(&t);
    tcfg_alg(&t, "HS256");
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "alice", "dev-1", 0, err, sizeof err));
    ck_assert_msg(strstr(err, "lifetime"), "%s", err);
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "", "dev-1", 60, err, sizeof err));
    ck_assert_msg(strstr(err, "user"), "%s", err);
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "alice", "", 60, err, sizeof err));
    ck_assert_msg(strstr(err, "device"), "%s", err);
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "alice\nbob", "dev-1", 60, err, sizeof err));
    ck_assert_str_eq(err, "user contains a control character");
    err[0] = '\0';
    ck_assert_ptr_null(auth_make_token(&t.c, "alice", "dev\xff", 60, err, sizeof err));
    ck_assert_str_eq(err, "device is not valid UTF-8");
}
END_TEST

/* ------------------------------------------------------------------ runner */

static Suite *jwt_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("hostile tokens");
    tcase_add_loop_test(tc, test_table, 0, (int)(sizeof rows / sizeof rows[0]));
    tcase_add_loop_test(tc, test_malformed, 0, (int)(sizeof malformed / sizeof malformed[0]));
    tcase_add_test(tc, test_flipped_payload_byte);
    tcase_add_test(tc, test_flipped_signature_byte);
    tcase_add_test(tc, test_non_canonical_base64);
    tcase_add_test(tc, test_oversized);
    tcase_add_test(tc, test_identity_length);
    tcase_add_test(tc, test_identity_utf8);
    suite_add_tcase(s, tc);

    tc = tcase_create("signed by libjwt");
    tcase_add_test(tc, test_libjwt_hmac);
    tcase_add_test(tc, test_rs256_rotation);
    tcase_add_test(tc, test_rs256_single_key);
    tcase_add_test(tc, test_rs256_claims_still_checked);
    tcase_add_test(tc, test_es256);
    tcase_add_test(tc, test_mixed_families);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth_new");
    tcase_add_test(tc, test_new_errors);
    tcase_add_test(tc, test_new_ok);
    tcase_add_test(tc, test_default_algorithms);
    tcase_add_test(tc, test_short_secret_warnings);
    suite_add_tcase(s, tc);

    tc = tcase_create("auth_authenticate");
    tcase_add_test(tc, test_authorization_header);
    tcase_add_test(tc, test_trusted_header);
    tcase_add_loop_test(tc, test_trusted_identity_check, 0,
                        (int)(sizeof identities / sizeof identities[0]));
    suite_add_tcase(s, tc);

    tc = tcase_create("auth_make_token");
    tcase_add_test(tc, test_make_token_round_trip);
    tcase_add_test(tc, test_verified_token_cache);
    tcase_add_test(tc, test_make_token_first_hmac);
    tcase_add_test(tc, test_make_token_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    setup_keys();
    int rc = run_suites(jwt_suite(), auth_suite(), NULL);
    cleanup_keys();
    return rc;
}
