#ifndef CZOOKEEPER_SHIM_H
#define CZOOKEEPER_SHIM_H

/* The synchronous API (zoo_create, zoo_get, ...) is only declared when THREADED is
 * defined; libzookeeper_mt is the threaded build. */
#ifndef THREADED
#define THREADED 1
#endif

#include <zookeeper/zookeeper.h>

/* ZOO_*_ACL are mutable C globals, which Swift 6 refuses to touch: hand out pointers. */
static inline struct ACL_vector *czk_open_acl_unsafe(void) { return &ZOO_OPEN_ACL_UNSAFE; }
static inline struct ACL_vector *czk_read_acl_unsafe(void) { return &ZOO_READ_ACL_UNSAFE; }
static inline struct ACL_vector *czk_creator_all_acl(void) { return &ZOO_CREATOR_ALL_ACL; }

#endif
