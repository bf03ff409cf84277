/* Shared between auth.c (dispatch, Bearer parsing), jwt.c and trusted_header.c; not installed. */
#ifndef OVERSYNCD_AUTH_INTERNAL_H
#define OVERSYNCD_AUTH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>

#include "auth.h"

/* The algorithms oversyncd implements; RS384/ES384/... are refused at start-up rather than
 * silently never matching. */
enum jwt_alg {
    JWT_HS256 = 0,
    JWT_HS384,
    JWT_HS512,
    JWT_RS256,
    JWT_ES256,
    JWT_N_ALGS
};

enum jwt_key_type { JWT_KEY_RSA, JWT_KEY_EC_P256 };

struct jwt_pubkey {
    char *kid;                   /* NULL when the configuration entry had no kid */
    char *path;                  /* for messages only */
    enum jwt_key_type type;
    EVP_PKEY *pkey;
};

/* Tokens this process verified successfully, each with the second it was verified in: the same
 * bytes in the same second give the same answer (the claims' time checks depend on nothing else),
 * so a client's burst of requests pays for one signature check and one JSON parse. */
#define JWT_CACHE_SLOTS 64
#define JWT_CACHE_TOKEN_MAX 1024
struct jwt_cache_slot {
    time_t second;               /* 0: empty */
    size_t len;
    char token[JWT_CACHE_TOKEN_MAX];
    struct identity id;
};
struct jwt_cache {
    struct jwt_cache_slot slot[JWT_CACHE_SLOTS];
};

struct auth_ctx {
    enum auth_mode mode;
    /* protocol = upload: the device comes from the token (did) or the trusted device parameter.
     * protocol = bundle: the device is the Oversync-Source-ID header, which the application
     * reads itself, so only the user is required here (device left empty). */
    bool need_device;

    /* jwt: everything is copied out of the configuration so the context outlives a reload. */
    bool alg_allowed[JWT_N_ALGS];
    unsigned char *secret;
    size_t secret_len;
    /* per allowed HS* algorithm: an HMAC context holding the secret, made once (fetching the
     * implementation costs far more than a signature) and started again for each token */
    struct evp_mac_ctx_st *hmac[JWT_N_ALGS];
    struct jwt_pubkey *keys;
    int n_keys;
    char *issuer;
    char *audience;
    long leeway_s;
    bool require_exp;
    size_t max_token_bytes;
    struct jwt_cache *cache;     /* per process (copied on fork); NULL: no caching */

    /* trusted_header */
    char *user_param;
    char *device_param;
};

/* Canonical name → algorithm; false for anything oversyncd does not implement. */
bool jwt_alg_from_name(const char *name, enum jwt_alg *out);
const char *jwt_alg_name(enum jwt_alg alg);

bool auth_jwt_setup(struct auth_ctx *ctx, const struct config *cfg, char *err, size_t errlen);
void auth_jwt_cleanup(struct auth_ctx *ctx);

bool auth_trusted_setup(struct auth_ctx *ctx, const struct config *cfg, char *err, size_t errlen);
void auth_trusted_cleanup(struct auth_ctx *ctx);
bool auth_trusted_authenticate(const struct auth_ctx *ctx, auth_param_fn param, void *ud,
                               struct identity *out, char *msg, size_t msglen);

#endif
