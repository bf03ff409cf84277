/* JWT verification (SPEC §2) and HS token minting.
 *
 * Signatures are checked with OpenSSL directly rather than through libjwt 1.10, which takes the
 * algorithm from the token header, verifies nothing with a NULL key and checks no claims. Doing
 * it here means one JSON parser (json-c) sees the exact bytes that were signed, and the key and
 * algorithm are chosen from the server configuration alone: the header's `alg` is only used to
 * refuse tokens whose algorithm is not configured, and the key family follows the configured
 * algorithm, so an HS256 token can never be checked against an RSA public key's PEM text. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "auth_internal.h"
#include "strbuf.h"
#include "base64.h"
#include "log.h"
#include "xalloc.h"

/* Applies when the configuration leaves the limit at 0, so hostile input is always bounded. */
#define DEFAULT_MAX_TOKEN_BYTES 8192
/* A PEM public key is a few kB; anything much larger is the wrong file. */
#define MAX_KEY_FILE_BYTES (64 * 1024)
/* RFC 7518 §3.3. */
#define MIN_RSA_BITS 2048
/* ES256 signatures are JOSE r||s, each a 32-byte big-endian integer (RFC 7518 §3.4). */
#define ES256_COORD_BYTES 32

static const char *const alg_names[JWT_N_ALGS] = {
    [JWT_HS256] = "HS256", [JWT_HS384] = "HS384", [JWT_HS512] = "HS512",
    [JWT_RS256] = "RS256", [JWT_ES256] = "ES256",
};

bool jwt_alg_from_name(const char *name, enum jwt_alg *out)
{
    for (int i = 0; i < JWT_N_ALGS; i++)
        if (strcasecmp(name, alg_names[i]) == 0) {
            *out = (enum jwt_alg)i;
            return true;
        }
    return false;
}

const char *jwt_alg_name(enum jwt_alg alg)
{
    return alg_names[alg];
}

/* RFC 7518 §3.2: an HMAC key at least as long as the hash output. */
static const size_t min_secret_bytes[JWT_N_ALGS] = {
    [JWT_HS256] = 32, [JWT_HS384] = 48, [JWT_HS512] = 64,
};

static bool alg_is_hmac(enum jwt_alg alg)
{
    return alg == JWT_HS256 || alg == JWT_HS384 || alg == JWT_HS512;
}

static const EVP_MD *hmac_md(enum jwt_alg alg)
{
    switch (alg) {
    case JWT_HS384:
        return EVP_sha384();
    case JWT_HS512:
        return EVP_sha512();
    default:
        return EVP_sha256();
    }
}

static const char *key_type_name(enum jwt_key_type t)
{
    return t == JWT_KEY_RSA ? "RSA" : "EC P-256";
}

/* ------------------------------------------------------------------ base64url */

/* Unpadded URL alphabet only (and, as base64_decode always does, zero trailing bits), so each
 * byte string has exactly one accepted encoding (no padding variants, no malleable signatures).
 * NULL when s is not canonical. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out = xmalloc(BASE64_DECODED_MAX(n));
    if (!base64_decode(s, n, BASE64_URL | BASE64_PAD_FORBIDDEN, out, outlen)) {
        free(out);
        return NULL;
    }
    return out;
}

static char *b64url_encode(const unsigned char *in, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = xmalloc(n / 3 * 4 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alphabet[(acc >> bits) & 63];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------ key loading */

static char *read_small_file(const char *path, size_t *len, char *err, size_t errlen)
{
    strbuf_t sb = STRBUF_INIT;
    switch (sb_read_file(&sb, path, MAX_KEY_FILE_BYTES)) {
    case SB_READ_OK:
        *len = sb.len;
        return sb.data;
    case SB_READ_CANNOT_OPEN:
        snprintf(err, errlen, "auth: jwt_public_key_files: %s: %s", path, strerror(errno));
        break;
    case SB_READ_ERROR:
        snprintf(err, errlen, "auth: jwt_public_key_files: %s: read error", path);
        break;
    case SB_READ_TOO_LARGE:
        snprintf(err, errlen, "auth: jwt_public_key_files: %s: larger than %d bytes, not a PEM "
                 "public key", path, MAX_KEY_FILE_BYTES);
        break;
    }
    OPENSSL_cleanse(sb.data, sb.len);
    sb_free(&sb);
    return NULL;
}

static bool load_public_key(const struct jwt_key_file *f, struct jwt_pubkey *k, char *err,
                            size_t errlen)
{
    size_t len;
    char *text = read_small_file(f->path, &len, err, errlen);
    if (!text)
        return false;

    BIO *bio = BIO_new_mem_buf(text, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    ERR_clear_error();
    bool has_private = strstr(text, "PRIVATE KEY-----") != NULL;
    OPENSSL_cleanse(text, len);
    free(text);

    if (!pkey) {
        if (has_private)
            snprintf(err, errlen, "auth: jwt_public_key_files: %s: holds a private key; give the "
                     "public key (openssl pkey -in KEY -pubout)", f->path);
        else
            snprintf(err, errlen, "auth: jwt_public_key_files: %s: no PEM public key found "
                     "(expected -----BEGIN PUBLIC KEY-----)", f->path);
        return false;
    }

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < MIN_RSA_BITS) {
            snprintf(err, errlen, "auth: jwt_public_key_files: %s: RSA key of %d bits is too "
                     "small (RS256 needs at least %d)", f->path, bits, MIN_RSA_BITS);
            EVP_PKEY_free(pkey);
            return false;
        }
        k->type = JWT_KEY_RSA;
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = "";
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                            sizeof group, NULL) ||
            (strcmp(group, "prime256v1") != 0 && strcasecmp(group, "P-256") != 0)) {
            ERR_clear_error();
            snprintf(err, errlen, "auth: jwt_public_key_files: %s: EC key on curve %s, but "
                     "ES256 needs P-256 (prime256v1)", f->path, group[0] ? group : "(unknown)");
            EVP_PKEY_free(pkey);
            return false;
        }
        k->type = JWT_KEY_EC_P256;
    } else {
        snprintf(err, errlen, "auth: jwt_public_key_files: %s: unsupported %s key (RS256 needs "
                 "RSA, ES256 needs EC P-256)", f->path, EVP_PKEY_get0_type_name(pkey));
        EVP_PKEY_free(pkey);
        return false;
    }

    k->pkey = pkey;
    k->path = xstrdup(f->path);
    k->kid = f->kid && *f->kid ? xstrdup(f->kid) : NULL;
    return true;
}

/* The HMAC contexts of the allowed HS* algorithms, keyed with the secret; an algorithm whose
 * context cannot be made is verified with one-shot HMAC() instead. */
static void hmac_contexts(struct auth_ctx *ctx)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    for (int i = 0; mac && i < JWT_N_ALGS; i++) {
        if (!ctx->alg_allowed[i] || !alg_is_hmac((enum jwt_alg)i))
            continue;
        EVP_MAC_CTX *h = EVP_MAC_CTX_new(mac);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                             (char *)EVP_MD_get0_name(hmac_md((enum jwt_alg)i)), 0),
            OSSL_PARAM_construct_end(),
        };
        if (h && EVP_MAC_init(h, ctx->secret, ctx->secret_len, params)) {
            ctx->hmac[i] = h;
        } else {
            EVP_MAC_CTX_free(h);
            ERR_clear_error();
        }
    }
    EVP_MAC_free(mac);
}

bool auth_jwt_setup(struct auth_ctx *ctx, const struct config *cfg, char *err, size_t errlen)
{
    if (!cfg->jwt_algorithms || cfg->n_jwt_algorithms <= 0) {
        snprintf(err, errlen, "auth: jwt_algorithms is empty");
        return false;
    }
    for (int i = 0; i < cfg->n_jwt_algorithms && cfg->jwt_algorithms[i]; i++) {
        enum jwt_alg alg;
        if (!jwt_alg_from_name(cfg->jwt_algorithms[i], &alg)) {
            snprintf(err, errlen, "auth: jwt_algorithms: unsupported algorithm \"%s\" (oversyncd "
                     "implements HS256, HS384, HS512, RS256, ES256)", cfg->jwt_algorithms[i]);
            return false;
        }
        ctx->alg_allowed[alg] = true;
    }
    const bool want_hmac = ctx->alg_allowed[JWT_HS256] || ctx->alg_allowed[JWT_HS384] ||
                           ctx->alg_allowed[JWT_HS512];
    const bool want_rsa = ctx->alg_allowed[JWT_RS256];
    const bool want_ec = ctx->alg_allowed[JWT_ES256];

    if (want_hmac) {
        if (!cfg->jwt_secret || !*cfg->jwt_secret) {
            snprintf(err, errlen, "auth: jwt_algorithms allows HMAC (HS*) tokens but no "
                     "jwt_secret is set (JWT_SECRET or jwt_secret_file)");
            return false;
        }
        ctx->secret_len = strlen(cfg->jwt_secret);
        ctx->secret = (unsigned char *)xstrndup(cfg->jwt_secret, ctx->secret_len);
        hmac_contexts(ctx);
        /* A warning, not an error: a deployment that works today keeps working. */
        for (int i = 0; i < JWT_N_ALGS; i++)
            if (ctx->alg_allowed[i] && ctx->secret_len < min_secret_bytes[i])
                log_warn("auth: jwt_secret has %zu bytes, fewer than the %zu that RFC 7518 "
                         "(section 3.2) asks for %s: use a random secret of at least %zu bytes, "
                         "or remove %s from jwt_algorithms",
                         ctx->secret_len, min_secret_bytes[i], alg_names[i], min_secret_bytes[i],
                         alg_names[i]);
    }

    if ((want_rsa || want_ec) && cfg->n_jwt_public_key_files <= 0) {
        snprintf(err, errlen, "auth: jwt_algorithms allows %s tokens but jwt_public_key_files is "
                 "empty", want_rsa ? "RS256" : "ES256");
        return false;
    }

    bool have_rsa = false, have_ec = false;
    if (cfg->n_jwt_public_key_files > 0)
        ctx->keys = xcalloc((size_t)cfg->n_jwt_public_key_files, sizeof *ctx->keys);
    for (int i = 0; i < cfg->n_jwt_public_key_files; i++) {
        const struct jwt_key_file *f = &cfg->jwt_public_key_files[i];
        struct jwt_pubkey *k = &ctx->keys[ctx->n_keys];
        if (!load_public_key(f, k, err, errlen))
            return false;
        ctx->n_keys++;
        bool wanted = k->type == JWT_KEY_RSA ? want_rsa : want_ec;
        if (!wanted) {
            snprintf(err, errlen, "auth: jwt_public_key_files: %s: %s key, but %s is not in "
                     "jwt_algorithms", k->path, key_type_name(k->type),
                     k->type == JWT_KEY_RSA ? "RS256" : "ES256");
            return false;
        }
        for (int j = 0; k->kid && j < ctx->n_keys - 1; j++)
            if (ctx->keys[j].kid && strcmp(ctx->keys[j].kid, k->kid) == 0) {
                snprintf(err, errlen, "auth: jwt_public_key_files: %s and %s share kid \"%s\"",
                         ctx->keys[j].path, k->path, k->kid);
                return false;
            }
        have_rsa |= k->type == JWT_KEY_RSA;
        have_ec |= k->type == JWT_KEY_EC_P256;
    }
    if (want_rsa && !have_rsa) {
        snprintf(err, errlen, "auth: jwt_algorithms allows RS256 but jwt_public_key_files has no "
                 "RSA key");
        return false;
    }
    if (want_ec && !have_ec) {
        snprintf(err, errlen, "auth: jwt_algorithms allows ES256 but jwt_public_key_files has no "
                 "EC P-256 key");
        return false;
    }

    ctx->issuer = cfg->jwt_issuer && *cfg->jwt_issuer ? xstrdup(cfg->jwt_issuer) : NULL;
    ctx->audience = cfg->jwt_audience && *cfg->jwt_audience ? xstrdup(cfg->jwt_audience) : NULL;
    /* Bounded so now ± leeway cannot overflow whatever the configuration says. */
    ctx->leeway_s = cfg->jwt_leeway_s < 0 ? 0 : cfg->jwt_leeway_s > INT_MAX ? INT_MAX
                                                                             : cfg->jwt_leeway_s;
    ctx->require_exp = cfg->jwt_require_exp;
    ctx->max_token_bytes = cfg->jwt_max_token_bytes > 0 ? (size_t)cfg->jwt_max_token_bytes
                                                        : DEFAULT_MAX_TOKEN_BYTES;
    ctx->cache = xcalloc(1, sizeof *ctx->cache);
    return true;
}

void auth_jwt_cleanup(struct auth_ctx *ctx)
{
    if (ctx->cache) {
        OPENSSL_cleanse(ctx->cache, sizeof *ctx->cache);
        free(ctx->cache);
        ctx->cache = NULL;
    }
    if (ctx->secret) {
        OPENSSL_cleanse(ctx->secret, ctx->secret_len);
        free(ctx->secret);
    }
    for (int i = 0; i < JWT_N_ALGS; i++) {
        EVP_MAC_CTX_free(ctx->hmac[i]);
        ctx->hmac[i] = NULL;
    }
    for (int i = 0; i < ctx->n_keys; i++) {
        EVP_PKEY_free(ctx->keys[i].pkey);
        free(ctx->keys[i].kid);
        free(ctx->keys[i].path);
    }
    free(ctx->keys);
    free(ctx->issuer);
    free(ctx->audience);
    ctx->secret = NULL;
    ctx->secret_len = 0;
    ctx->keys = NULL;
    ctx->n_keys = 0;
    ctx->issuer = ctx->audience = NULL;
}

/* ------------------------------------------------------------------ signatures */

static bool verify_hmac(const struct auth_ctx *ctx, enum jwt_alg alg, const char *input,
                        size_t inlen, const unsigned char *sig, size_t siglen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    EVP_MAC_CTX *h = alg_is_hmac(alg) ? ctx->hmac[alg] : NULL;
    if (h) {
        /* started again with the key it holds */
        size_t outl = 0;
        if (!EVP_MAC_init(h, NULL, 0, NULL) || !EVP_MAC_update(h, (const unsigned char *)input, inlen) ||
            !EVP_MAC_final(h, mac, &outl, sizeof mac)) {
            ERR_clear_error();
            return false;
        }
        bool ok = siglen == outl && ct_equal(mac, sig, outl);
        OPENSSL_cleanse(mac, sizeof mac);
        return ok;
    }
    if (!ctx->secret || ctx->secret_len > INT_MAX ||
        !HMAC(hmac_md(alg), ctx->secret, (int)ctx->secret_len, (const unsigned char *)input,
              inlen, mac, &maclen)) {
        ERR_clear_error();
        return false;
    }
    bool ok = siglen == maclen && ct_equal(mac, sig, maclen);
    OPENSSL_cleanse(mac, sizeof mac);
    return ok;
}

/* JOSE r||s → the DER ECDSA-Sig-Value that OpenSSL verifies. */
static unsigned char *es256_to_der(const unsigned char *sig, size_t siglen, size_t *derlen)
{
    if (siglen != 2 * ES256_COORD_BYTES)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, ES256_COORD_BYTES, NULL);
    BIGNUM *s = BN_bin2bn(sig + ES256_COORD_BYTES, ES256_COORD_BYTES, NULL);
    unsigned char *der = NULL;
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    int n = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    if (n <= 0)
        return NULL;
    *derlen = (size_t)n;
    return der;
}

static bool verify_pkey(const struct jwt_pubkey *k, const char *input, size_t inlen,
                        const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    if (k->type == JWT_KEY_EC_P256) {
        der = es256_to_der(sig, siglen, &siglen);
        if (!der) {
            ERR_clear_error();
            return false;
        }
        sig = der;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = md && EVP_DigestVerifyInit_ex(md, &pctx, "SHA256", NULL, NULL, k->pkey, NULL) == 1 &&
              (k->type != JWT_KEY_RSA || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1) &&
              EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input, inlen) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    /* A failed verification leaves entries on the thread's error queue; drop them so they are
     * not reported later against an unrelated OpenSSL call. */
    ERR_clear_error();
    return ok;
}

static bool verify_signature(const struct auth_ctx *ctx, enum jwt_alg alg, const char *kid,
                             const char *input, size_t inlen, const unsigned char *sig,
                             size_t siglen, char *msg, size_t msglen)
{
    if (alg_is_hmac(alg)) {
        if (verify_hmac(ctx, alg, input, inlen, sig, siglen))
            return true;
        snprintf(msg, msglen, "invalid token signature");
        return false;
    }

    const enum jwt_key_type want = alg == JWT_RS256 ? JWT_KEY_RSA : JWT_KEY_EC_P256;
    if (kid) {
        for (int i = 0; i < ctx->n_keys; i++) {
            const struct jwt_pubkey *k = &ctx->keys[i];
            if (k->type == want && k->kid && strcmp(k->kid, kid) == 0) {
                if (verify_pkey(k, input, inlen, sig, siglen))
                    return true;
                snprintf(msg, msglen, "invalid token signature");
                return false;
            }
        }
    }
    /* Without a kid, any configured key of the algorithm's type may have signed it. With a kid
     * that names none of them, keys configured without a kid still qualify: an issuer that
     * always sends a kid must not force the operator to learn and copy it. */
    int tried = 0;
    for (int i = 0; i < ctx->n_keys; i++) {
        const struct jwt_pubkey *k = &ctx->keys[i];
        if (k->type != want || (kid && k->kid))
            continue;
        tried++;
        if (verify_pkey(k, input, inlen, sig, siglen))
            return true;
    }
    snprintf(msg, msglen, kid && tried == 0 ? "unknown key id" : "invalid token signature");
    return false;
}

/* ------------------------------------------------------------------ JSON and claims */

/* Strict JSON, one object, nothing after it: the bytes that were signed are exactly the bytes
 * that are interpreted. */
static json_object *parse_object(const unsigned char *buf, size_t len)
{
    if (len > INT_MAX)
        return NULL;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return NULL;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    json_object *o = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
    bool ok = o && json_tokener_get_error(tok) == json_tokener_success &&
              json_tokener_get_parse_end(tok) == len && json_object_is_type(o, json_type_object);
    json_tokener_free(tok);
    if (!ok) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* A string of exactly its JSON length (no embedded NUL, which C would silently truncate). */
static const char *json_cstring(json_object *v, size_t *len)
{
    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (strlen(s) != n)
        return NULL;
    *len = n;
    return s;
}

static bool identity_claim(json_object *payload, const char *name, char dst[IDENTITY_MAX],
                           char *msg, size_t msglen)
{
    json_object *v;
    if (!json_object_object_get_ex(payload, name, &v)) {
        snprintf(msg, msglen, "missing claim %s", name);
        return false;
    }
    size_t n;
    const char *s = json_cstring(v, &n);
    if (!s || n == 0) {
        snprintf(msg, msglen, "claim %s must be a non-empty string", name);
        return false;
    }
    char what[16];
    snprintf(what, sizeof what, "claim %s", name);
    if (!identity_check(s, n, what, msg, msglen))
        return false;
    memcpy(dst, s, n + 1);
    return true;
}

enum numeric_date { DATE_OK, DATE_NOT_A_NUMBER, DATE_OUT_OF_RANGE };

/* Reads a NumericDate (RFC 7519 §2) and sets *cmp to the sign of (claim - t). Fractional seconds
 * are allowed, as the RFC allows them. NaN, ±Infinity and numbers outside the 64-bit time range
 * are DATE_OUT_OF_RANGE: json-c accepts the literals NaN and Infinity, reads 1e400 as infinity
 * and clamps an integer too large for 64 bits to INT64_MIN or INT64_MAX, so those two bounds are
 * refused as well (a NaN would never compare as expired). */
static enum numeric_date numeric_date_cmp(json_object *v, long long t, int *cmp)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x == INT64_MIN || x == INT64_MAX)
            return DATE_OUT_OF_RANGE;
        *cmp = (x > t) - (x < t);
        return DATE_OK;
    }
    if (json_object_is_type(v, json_type_double)) {
        double x = json_object_get_double(v), y = (double)t;
        if (!isfinite(x) || x <= -0x1p63 || x >= 0x1p63)
            return DATE_OUT_OF_RANGE;
        *cmp = (x > y) - (x < y);
        return DATE_OK;
    }
    return DATE_NOT_A_NUMBER;
}

/* Looks up the time claim name; false with the reason in msg when it is present but no usable
 * NumericDate. *present tells whether it was there, *cmp compares it with t. */
static bool time_claim(json_object *payload, const char *name, long long t, bool *present,
                       int *cmp, char *msg, size_t msglen)
{
    json_object *v;
    *present = json_object_object_get_ex(payload, name, &v);
    if (!*present)
        return true;
    switch (numeric_date_cmp(v, t, cmp)) {
    case DATE_OK:
        return true;
    case DATE_NOT_A_NUMBER:
        snprintf(msg, msglen, "claim %s must be a number", name);
        return false;
    default:
        snprintf(msg, msglen, "claim %s must be a finite number within the 64-bit time range", name);
        return false;
    }
}

static bool check_times(const struct auth_ctx *ctx, json_object *payload, time_t now, char *msg,
                        size_t msglen)
{
    const long long t = (long long)now;
    bool present;
    int cmp;

    if (!time_claim(payload, "exp", t - ctx->leeway_s, &present, &cmp, msg, msglen))
        return false;
    if (present && cmp < 0) {
        snprintf(msg, msglen, "token expired");
        return false;
    }
    if (!present && ctx->require_exp) {
        snprintf(msg, msglen, "missing claim exp");
        return false;
    }

    if (!time_claim(payload, "nbf", t + ctx->leeway_s, &present, &cmp, msg, msglen))
        return false;
    if (present && cmp > 0) {
        snprintf(msg, msglen, "token not yet valid");
        return false;
    }

    /* iat is not compared with the clock (a token issued by a host whose clock runs ahead stays
     * usable), but it must be a real time like the others. */
    return time_claim(payload, "iat", t, &present, &cmp, msg, msglen);
}

static bool string_equals(json_object *v, const char *want)
{
    size_t n;
    const char *s = json_cstring(v, &n);
    return s && n == strlen(want) && memcmp(s, want, n) == 0;
}

static bool check_issuer_audience(const struct auth_ctx *ctx, json_object *payload, char *msg,
                                  size_t msglen)
{
    json_object *v;
    if (ctx->issuer) {
        if (!json_object_object_get_ex(payload, "iss", &v)) {
            snprintf(msg, msglen, "missing claim iss");
            return false;
        }
        if (!string_equals(v, ctx->issuer)) {
            snprintf(msg, msglen, "invalid issuer");
            return false;
        }
    }
    if (ctx->audience) {
        if (!json_object_object_get_ex(payload, "aud", &v)) {
            snprintf(msg, msglen, "missing claim aud");
            return false;
        }
        bool ok = false;
        if (v && json_object_is_type(v, json_type_array)) {
            size_t n = json_object_array_length(v);
            for (size_t i = 0; i < n && !ok; i++)
                ok = string_equals(json_object_array_get_idx(v, i), ctx->audience);
        } else {
            ok = string_equals(v, ctx->audience);
        }
        if (!ok) {
            snprintf(msg, msglen, "invalid audience");
            return false;
        }
    }
    return true;
}

/* The header's alg, for the rejection message, only when it is short and plain: the message
 * goes back to the client and into logs. */
static bool printable_alg(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* ------------------------------------------------------------------ verification */

struct parts {
    unsigned char *header, *payload, *sig;
    size_t header_len, payload_len, sig_len;
    size_t signed_len;           /* "header.payload", the signing input */
};

static void parts_free(struct parts *p)
{
    free(p->header);
    free(p->payload);
    free(p->sig);
}

static bool split_token(const char *token, size_t len, struct parts *p)
{
    const char *d1 = memchr(token, '.', len);
    if (!d1)
        return false;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2)
        return false;
    const char *end = token + len;
    if (memchr(d2 + 1, '.', (size_t)(end - d2 - 1)))
        return false;
    size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1), sl = (size_t)(end - d2 - 1);
    if (hl == 0 || pl == 0 || sl == 0)
        return false;
    p->header = b64url_decode(token, hl, &p->header_len);
    p->payload = b64url_decode(d1 + 1, pl, &p->payload_len);
    p->sig = b64url_decode(d2 + 1, sl, &p->sig_len);
    p->signed_len = (size_t)(d2 - token);
    return p->header && p->payload && p->sig;
}

/* The cache slot of a token: its last bytes are signature bytes, which differ between tokens. */
static struct jwt_cache_slot *cache_slot(struct jwt_cache *c, const char *token, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ len;
    size_t from = len > 16 ? len - 16 : 0;
    for (size_t i = from; i < len; i++)
        h = (h ^ (unsigned char)token[i]) * 1099511628211ULL;
    return &c->slot[h % JWT_CACHE_SLOTS];
}

static bool cache_lookup(const struct auth_ctx *ctx, const char *token, size_t len, time_t now,
                         struct identity *out)
{
    if (!ctx->cache || len > JWT_CACHE_TOKEN_MAX || now <= 0)
        return false;
    const struct jwt_cache_slot *s = cache_slot(ctx->cache, token, len);
    if (s->second != now || s->len != len || !ct_equal(s->token, token, len))
        return false;
    *out = s->id;
    return true;
}

static void cache_store(const struct auth_ctx *ctx, const char *token, size_t len, time_t now,
                        const struct identity *id)
{
    if (!ctx->cache || len > JWT_CACHE_TOKEN_MAX || now <= 0)
        return;
    struct jwt_cache_slot *s = cache_slot(ctx->cache, token, len);
    s->second = now;
    s->len = len;
    memcpy(s->token, token, len);
    s->id = *id;
}

bool auth_jwt_verify(const struct auth_ctx *ctx, const char *token, time_t now,
                     struct identity *out, char *msg, size_t msglen)
{
    const size_t max = ctx->max_token_bytes ? ctx->max_token_bytes : DEFAULT_MAX_TOKEN_BYTES;
    const size_t len = strnlen(token, max + 1);
    if (len > max) {
        snprintf(msg, msglen, "token too large");
        return false;
    }
    if (cache_lookup(ctx, token, len, now, out))
        return true;

    struct parts p = { 0 };
    json_object *header = NULL, *payload = NULL;
    bool ok = false;

    if (!split_token(token, len, &p) || !(header = parse_object(p.header, p.header_len))) {
        snprintf(msg, msglen, "malformed token");
        goto done;
    }

    json_object *v;
    const char *alg_name = NULL, *kid = NULL;
    size_t n;
    if (!json_object_object_get_ex(header, "alg", &v) || !(alg_name = json_cstring(v, &n))) {
        snprintf(msg, msglen, "malformed token");
        goto done;
    }
    /* Only exact, configured names count: "hs256" or "none" must not slip through a lenient
     * lookup. */
    enum jwt_alg alg = JWT_N_ALGS;
    for (int i = 0; i < JWT_N_ALGS; i++)
        if (strcmp(alg_name, alg_names[i]) == 0 && ctx->alg_allowed[i])
            alg = (enum jwt_alg)i;
    if (alg == JWT_N_ALGS) {
        if (printable_alg(alg_name))
            snprintf(msg, msglen, "algorithm %s not allowed", alg_name);
        else
            snprintf(msg, msglen, "algorithm not allowed");
        goto done;
    }
    /* RFC 7515 §4.1.11: extensions we do not implement (b64=false, ...) must be refused. */
    if (json_object_object_get_ex(header, "crit", NULL)) {
        snprintf(msg, msglen, "unsupported critical header parameter");
        goto done;
    }
    if (json_object_object_get_ex(header, "kid", &v) && !(kid = json_cstring(v, &n))) {
        snprintf(msg, msglen, "malformed token");
        goto done;
    }

    if (!verify_signature(ctx, alg, kid, token, p.signed_len, p.sig, p.sig_len, msg, msglen))
        goto done;

    if (!(payload = parse_object(p.payload, p.payload_len))) {
        snprintf(msg, msglen, "malformed token");
        goto done;
    }
    struct identity id;
    id.device[0] = '\0';
    if (!identity_claim(payload, "sub", id.user, msg, msglen) ||
        (ctx->need_device && !identity_claim(payload, "did", id.device, msg, msglen)) ||
        !check_times(ctx, payload, now, msg, msglen) ||
        !check_issuer_audience(ctx, payload, msg, msglen))
        goto done;
    *out = id;
    cache_store(ctx, token, len, now, &id);
    ok = true;

done:
    json_object_put(header);
    json_object_put(payload);
    parts_free(&p);
    return ok;
}

/* ------------------------------------------------------------------ minting */

char *auth_make_token(const struct config *cfg, const char *user, const char *device,
                      long ttl_seconds, char *err, size_t errlen)
{
    enum jwt_alg alg = JWT_N_ALGS;
    for (int i = 0; i < cfg->n_jwt_algorithms && cfg->jwt_algorithms && cfg->jwt_algorithms[i];
         i++) {
        enum jwt_alg a;
        if (jwt_alg_from_name(cfg->jwt_algorithms[i], &a) && alg_is_hmac(a)) {
            alg = a;
            break;
        }
    }
    if (alg == JWT_N_ALGS) {
        snprintf(err, errlen, "jwt_algorithms has no HMAC algorithm (HS256, HS384, HS512) to "
                 "sign with");
        return NULL;
    }
    if (!cfg->jwt_secret || !*cfg->jwt_secret) {
        snprintf(err, errlen, "no jwt_secret is set (JWT_SECRET or jwt_secret_file)");
        return NULL;
    }
    const struct { const char *name, *value; } ids[] = { { "user", user }, { "device", device } };
    /* A token the server would refuse is no use: the same check as on verification. */
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (!identity_check(ids[i].value ? ids[i].value : "",
                            ids[i].value ? strlen(ids[i].value) : 0, ids[i].name, err, errlen))
            return NULL;
    const long long now = (long long)time(NULL);
    if (ttl_seconds <= 0 || ttl_seconds > LLONG_MAX - now) {
        snprintf(err, errlen, "token lifetime must be a positive number of seconds");
        return NULL;
    }

    json_object *claims = json_object_new_object();
    json_object_object_add(claims, "sub", json_object_new_string(user));
    json_object_object_add(claims, "did", json_object_new_string(device));
    json_object_object_add(claims, "iat", json_object_new_int64(now));
    json_object_object_add(claims, "exp", json_object_new_int64(now + ttl_seconds));
    if (cfg->jwt_issuer && *cfg->jwt_issuer)
        json_object_object_add(claims, "iss", json_object_new_string(cfg->jwt_issuer));
    if (cfg->jwt_audience && *cfg->jwt_audience)
        json_object_object_add(claims, "aud", json_object_new_string(cfg->jwt_audience));
    const char *payload_json =
        json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN |
                                               JSON_C_TO_STRING_NOSLASHESCAPE);

    char header_json[64];
    snprintf(header_json, sizeof header_json, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg_names[alg]);
    char *h = b64url_encode((const unsigned char *)header_json, strlen(header_json));
    char *p = b64url_encode((const unsigned char *)payload_json, strlen(payload_json));
    json_object_put(claims);

    size_t hl = strlen(h), pl = strlen(p);
    char *input = xmalloc(hl + 1 + pl + 1);
    memcpy(input, h, hl);
    input[hl] = '.';
    memcpy(input + hl + 1, p, pl + 1);
    free(h);
    free(p);

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    size_t secret_len = strlen(cfg->jwt_secret);
    if (secret_len > INT_MAX ||
        !HMAC(hmac_md(alg), cfg->jwt_secret, (int)secret_len, (const unsigned char *)input,
              hl + 1 + pl, mac, &maclen)) {
        ERR_clear_error();
        snprintf(err, errlen, "HMAC signing failed");
        free(input);
        return NULL;
    }
    char *s = b64url_encode(mac, maclen);
    OPENSSL_cleanse(mac, sizeof mac);

    size_t il = hl + 1 + pl, sl = strlen(s);
    char *token = xmalloc(il + 1 + sl + 1);
    memcpy(token, input, il);
    token[il] = '.';
    memcpy(token + il + 1, s, sl + 1);
    free(input);
    free(s);
    return token;
}
