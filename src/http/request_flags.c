/*
 * The bit fields of ngx_http_request_t that the module reads or writes,
 * compiled by the C compiler from the headers of the nginx being built for.
 *
 * bindgen (0.72) places a run of bit fields as if it began at an offset
 * aligned for its type. The run in ngx_http_request_t now
 * follows "in_port_t port" (added in the 1.29 mainline: 1.30 has it,
 * 1.28 has not), so it begins two bytes into a four-byte unit,
 * and the compiler starts "uri_changes:4" at the next unit rather than
 * letting it straddle: every bit field from there on is two bits further
 * than bindgen's accessors say ("header_only" is read from "pipeline").
 * Here the compiler lays them out as nginx itself does, on every version.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_uint_t ngx_http_shared_map_header_only(const ngx_http_request_t *r);
ngx_uint_t ngx_http_shared_map_redirected(const ngx_http_request_t *r);
void ngx_http_shared_map_disable_not_modified(ngx_http_request_t *r);
void ngx_http_shared_map_hold(ngx_http_request_t *r);


ngx_uint_t
ngx_http_shared_map_header_only(const ngx_http_request_t *r)
{
    return r->header_only;
}


ngx_uint_t
ngx_http_shared_map_redirected(const ngx_http_request_t *r)
{
    return r->internal || r->filter_finalize;
}


void
ngx_http_shared_map_disable_not_modified(ngx_http_request_t *r)
{
    r->disable_not_modified = 1;
}


void
ngx_http_shared_map_hold(ngx_http_request_t *r)
{
    r->main->count++;
}
