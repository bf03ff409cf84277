/* Who a request comes from: the user (JWT sub) and the device (JWT did), as established by an
 * authenticator (auth/) and used by the sync core to scope every key and query. A leaf: the sync
 * core needs the value, not the authenticators. */
#ifndef OVERSYNCD_IDENTITY_H
#define OVERSYNCD_IDENTITY_H

#define IDENTITY_MAX 256

struct identity {
    char user[IDENTITY_MAX];     /* JWT sub */
    char device[IDENTITY_MAX];   /* JWT did */
};

#endif
