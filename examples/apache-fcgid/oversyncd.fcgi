#!/bin/sh
# oversyncd under Apache mod_fcgid: the FastCGI "script" that .htaccess sends the sync paths
# to. mod_fcgid runs it with a listening socket as standard input; oversyncd serves that socket,
# one request at a time, until Apache stops it (SIGTERM).
#
# It sits next to .htaccess in the web directory and must be executable (chmod 755). mod_fcgid
# passes Apache's environment on only partly, so everything oversyncd needs comes from here
# and from the configuration file. The paths are those of
#     ./configure --prefix=$HOME/oversyncd && make && make install
# for the user alice; adjust them to your home directory.

# The configuration (oversyncd reads OVERSYNCD_CONFIG when there is no -c).
OVERSYNCD_CONFIG=/home/alice/oversyncd/etc/oversyncd/oversyncd.conf
export OVERSYNCD_CONFIG

# Secrets may also come from the environment, where they take precedence over the file:
#   DATABASE_URL='host=/var/run/postgresql dbname=alice user=alice'; export DATABASE_URL
#   JWT_SECRET=...; export JWT_SECRET
# The configuration file (jwt_secret_file) keeps them out of this script, which sits in the
# web directory.

exec /home/alice/oversyncd/sbin/oversyncd
