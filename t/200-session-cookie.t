# The session store's cookie: a session and its cookie exist only once something
# is written; the cookie's attributes; ids a client makes up are never adopted.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();

use_default_config(http_config => <<'_EOC_', config => <<'_EOC_');
    shared_map sessions hashmap?space=1m;

    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /backend/ {
            return 200 "got: $http_x_session\n";
        }
        location = /backend/login {
            add_header X-Shared-Map-Session "user=alice";
            return 200 "welcome\n";
        }
    }
_EOC_
    shared_map_session sessions;

    location = /session {
        shared_map_session_api write;
    }
    location /app/ {
        proxy_set_header X-Session $shared_map_session;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/backend/;
    }
    location = /id {
        return 200 "id=$shared_map_session_id data=$shared_map_session\n";
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a request that writes nothing creates no session and sets no cookie
--- request
GET /app/page
--- response_body
got: 
--- response_headers
!Set-Cookie
--- no_error_log
[error]



=== TEST 2: the variables are empty without a session
--- request
GET /id
--- response_body
id= data=
--- response_headers
!Set-Cookie



=== TEST 3: an upstream's X-Shared-Map-Session creates the session and its cookie
--- request
GET /app/login
--- response_body
welcome
--- response_headers_like
Set-Cookie: SMSESSION=[0-9a-f]{32}; Path=/; HttpOnly; SameSite=Lax
--- no_error_log
[error]



=== TEST 4: the upstream's session header never reaches the client
--- request
GET /app/login
--- raw_response_headers_unlike: (?i)X-Shared-Map-Session
--- response_body
welcome



=== TEST 5: a PUT creates the session, 201 and the cookie
--- request
PUT /session
cart=3
--- error_code: 201
--- response_headers_like
Set-Cookie: SMSESSION=[0-9a-f]{32}; Path=/; HttpOnly; SameSite=Lax
--- response_body
--- no_error_log
[error]



=== TEST 6: every cookie attribute as configured
--- config
    shared_map_session sessions cookie=sid timeout=1h secure samesite=strict path=/shop domain=example.com;
    location = /session {
        shared_map_session_api write;
    }
--- request
PUT /session
x
--- error_code: 201
--- response_headers_like
Set-Cookie: sid=[0-9a-f]{32}; Path=/shop; Domain=example\.com; HttpOnly; Secure; SameSite=Strict



=== TEST 7: samesite=none with secure
--- config
    shared_map_session sessions samesite=none secure;
    location = /session {
        shared_map_session_api write;
    }
--- request
PUT /session
x
--- error_code: 201
--- response_headers_like
Set-Cookie: SMSESSION=[0-9a-f]{32}; Path=/; HttpOnly; Secure; SameSite=None



=== TEST 8: GET without a session is 404
--- request
GET /session
--- error_code: 404
--- response_body
no session
--- response_headers
!Set-Cookie



=== TEST 9: DELETE without a session is 404
--- request
DELETE /session
--- error_code: 404
--- response_body
no session



=== TEST 10: other methods are 405, with Allow
--- request
POST /session
x
--- error_code: 405
--- response_headers
Allow: GET, HEAD, PUT, DELETE
--- response_body
method not allowed



=== TEST 11: data with CR, LF or NUL is refused, and creates nothing
--- request eval
"PUT /session\nuser=alice\r\nX-Admin: 1"
--- error_code: 400
--- response_body
session data must not contain CR, LF or NUL
--- response_headers
!Set-Cookie



=== TEST 12: a well-formed id that names no session is not adopted
--- request
GET /id
--- more_headers
Cookie: SMSESSION=0123456789abcdef0123456789abcdef
--- response_body
id= data=



=== TEST 13: nor through the API
--- request
GET /session
--- more_headers
Cookie: SMSESSION=0123456789abcdef0123456789abcdef
--- error_code: 404



=== TEST 14: nor on a write: a PUT with an unknown id gets a new one
--- request
PUT /session
user=mallory
--- more_headers
Cookie: SMSESSION=0123456789abcdef0123456789abcdef
--- error_code: 201
--- response_headers_like
Set-Cookie: SMSESSION=(?!0123456789abcdef0123456789abcdef)[0-9a-f]{32}; Path=/; HttpOnly; SameSite=Lax



=== TEST 15: nor when the upstream writes
--- request
GET /app/login
--- more_headers
Cookie: SMSESSION=0123456789abcdef0123456789abcdef
--- response_headers_like
Set-Cookie: SMSESSION=(?!0123456789abcdef0123456789abcdef)[0-9a-f]{32}; Path=/; HttpOnly; SameSite=Lax



=== TEST 16: malformed session cookies are ignored
--- request
GET /id
--- more_headers
Cookie: SMSESSION=../../etc; SMSESSION=0123456789ABCDEF0123456789ABCDEF; SMSESSION=0123456789abcdef0123456789abcdef0
--- response_body
id= data=



=== TEST 17: an unknown parameter stops nginx
--- config
    shared_map_session sessions foo=1;
--- request
GET /
--- must_die
--- error_log
invalid parameter "foo=1"



=== TEST 18: samesite=none without secure stops nginx
--- config
    shared_map_session sessions samesite=none;
--- request
GET /
--- must_die
--- error_log
"samesite=none" requires "secure"



=== TEST 19: a bad timeout stops nginx
--- config
    shared_map_session sessions timeout=soon;
--- request
GET /
--- must_die
--- error_log
invalid timeout "soon"



=== TEST 20: a map that is never defined stops nginx
--- config
    shared_map_session nosuchmap;
--- request
GET /
--- must_die
--- error_log
"nosuchmap"
