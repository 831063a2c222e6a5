# shared_map_api: reading, writing and deleting single keys.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

# Every block gets the API suites' maps and locations unless it brings its own
# (t/lib/SharedMapTest.pm); a block named "..." continues the previous one.
use_api_config();
share_with_init(qw(call is ok));

run_tests();

__DATA__

=== TEST 1: PUT creates (201), PUT again replaces (204), GET returns exactly the bytes
--- request eval
["PUT /api/m?key=greeting\nhello", "GET /api/m?key=greeting", "PUT /api/m?key=greeting\nbonjour", "GET /api/m?key=greeting"]
--- error_code eval
[201, 200, 204, 200]
--- response_body eval
["", "hello", "", "bonjour"]
--- response_headers eval
["", "X-Shared-Map-Type: string\nContent-Type: text/plain\nContent-Length: 5", "", "X-Shared-Map-Type: string"]



=== TEST 2: int and long values, sent and returned in decimal with their type
--- request eval
["PUT /api/m?key=i&type=int\n-2147483648", "GET /api/m?key=i",
 "PUT /api/m?key=l&type=long\n9223372036854775807", "GET /api/m?key=l",
 "PUT /api/m?key=s&type=string\n42", "GET /api/m?key=s"]
--- error_code eval
[201, 200, 201, 200, 201, 200]
--- response_body eval
["", "-2147483648", "", "9223372036854775807", "", "42"]
--- response_headers eval
["", "X-Shared-Map-Type: int", "", "X-Shared-Map-Type: long", "", "X-Shared-Map-Type: string"]



=== TEST 3: a PUT may change a value's type
--- request eval
["PUT /api/m?key=t&type=int\n7", "PUT /api/m?key=t\nseven", "GET /api/m?key=t", "PUT /api/m?key=t&type=long\n8", "GET /api/m?key=t"]
--- error_code eval
[201, 204, 200, 204, 200]
--- response_body eval
["", "", "seven", "", "8"]
--- response_headers eval
["", "", "X-Shared-Map-Type: string", "", "X-Shared-Map-Type: long"]



=== TEST 4: DELETE removes (204); the key is then absent (404), and a second DELETE is 404
--- request eval
["PUT /api/m?key=gone\nx", "DELETE /api/m?key=gone", "GET /api/m?key=gone", "DELETE /api/m?key=gone"]
--- error_code eval
[201, 204, 404, 404]
--- response_body eval
["", "", "key not found\n", "key not found\n"]



=== TEST 5: keys are percent-decoded: slash, space, NUL, UTF-8 and other bytes
--- request eval
["PUT /api/m?key=a%2Fb%20c%00%C3%A9%FF\nbinary key",
 "GET /api/m?key=a/b%20c%00%c3%a9%ff",
 "GET /api/m?key=a/b%20c",
 "GET /api/m?key=a%2Fb%20c%00%C3%A9"]
--- error_code eval
[201, 200, 404, 404]
--- response_body eval
["", "binary key", "key not found\n", "key not found\n"]



=== TEST 6: "+" is a plus sign, not a space; a space is %20
--- request eval
["PUT /api/m?key=a+b\nplus", "GET /api/m?key=a%2Bb", "GET /api/m?key=a%20b", "PUT /api/m?key=a%20b\nspace", "GET /api/m?key=a+b", "GET /api/m?key=a%20b"]
--- error_code eval
[201, 200, 404, 201, 200, 200]
--- response_body eval
["", "plus", "key not found\n", "", "plus", "space"]



=== TEST 7: an empty key and an empty value are ordinary
--- request eval
["PUT /api/m?key=\n", "GET /api/m?key="]
--- more_headers
Content-Length: 0
--- error_code eval
[201, 200]
--- response_body eval
["", ""]
--- response_headers eval
["", "Content-Length: 0\nX-Shared-Map-Type: string"]



=== TEST 8: a value of CR, LF, NUL and high bytes round-trips unchanged
--- request eval
["PUT /api/h?key=raw\n\r\n\0\xff x \r\n\n", "GET /api/h?key=raw"]
--- more_headers eval
["Content-Length: 10", ""]
--- error_code eval
[201, 200]
--- response_body eval
["", "\r\n\0\xff x \r\n\n"]



=== TEST 9: a map named in the directive is served at the location itself, sharing the data
--- request eval
["PUT /m?key=shared\nsame map", "GET /api/m?key=shared", "POST /m?key=n&incr=3", "GET /api/m?key=n"]
--- error_code eval
[201, 200, 200, 200]
--- response_body eval
["", "same map", "3", "3"]



=== TEST 10: HEAD sends the headers of GET without the body
--- request eval
["PUT /api/m?key=head\nfive!", "HEAD /api/m?key=head", "HEAD /api/m?key=nohead"]
--- error_code eval
[201, 200, 404]
--- response_body eval
["", "", ""]
--- response_headers eval
["", "Content-Length: 5\nX-Shared-Map-Type: string", ""]



=== TEST 11: nx stores only when the key is absent; a refused write changes nothing
--- request eval
["PUT /api/m?key=once&nx\nfirst", "PUT /api/m?key=once&nx\nsecond", "GET /api/m?key=once"]
--- error_code eval
[201, 409, 200]
--- response_body eval
["", "key exists\n", "first"]



=== TEST 12: ttl: the entry expires after its time to live
--- init
use HTTP::Tiny;
my $url = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/api/m?key=brief&ttl=1s";
my $res = HTTP::Tiny->new->put($url, { content => "soon gone" });
die "PUT: $res->{status}" if $res->{status} != 201;
sleep 2;
--- request
GET /api/m?key=brief
--- error_code: 404
--- response_body
key not found



=== TEST 13: ttl=0 means never, other ttls use nginx time syntax
--- request eval
["PUT /api/m?key=forever&ttl=0\nx", "PUT /api/m?key=hour&ttl=1h\ny", "PUT /api/m?key=ms&ttl=1500ms\nz", "GET /api/m?prefix=forever", "GET /api/m?prefix=hour"]
--- error_code eval
[201, 201, 201, 200, 200]
--- response_body_like eval
["^\$", "^\$", "^\$", '"entries":\[\{"key":"forever","type":"string","value":"x"\}\]', '"entries":\[\{"key":"hour","ttl":3[56]\d\d,"type":"string","value":"y"\}\]']



=== TEST 14: a body larger than client_body_buffer_size is read from nginx's temporary file
--- config
    location /api/ {
        client_body_buffer_size 1k;
        shared_map_api;
    }
--- request eval
"PUT /api/h?key=big\n" . ("0123456789abcdef" x 8192)
--- error_code: 201
--- response_body eval
""
--- error_log
a client request body is buffered to a temporary file



=== TEST 15: ... and stored whole
--- request
GET /api/h?key=big
--- error_code: 200
--- response_body eval
"0123456789abcdef" x 8192



=== TEST 16: a body nginx writes to a file only (client_body_in_file_only)
--- config
    client_body_in_file_only clean;
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/h?key=file\nfrom a file", "GET /api/h?key=file"]
--- error_code eval
[201, 200]
--- response_body eval
["", "from a file"]



=== TEST 17: client_max_body_size applies (413 from nginx), and nothing is stored
--- config
    location /api/ {
        client_max_body_size 1k;
        shared_map_api;
    }
--- request eval
["PUT /api/h?key=toolarge\n" . ("x" x 2048), "GET /api/h?key=toolarge"]
--- error_code eval
[413, 404]



=== TEST 18: $shared_map_value never puts CR or LF into a header: control bytes and % become %XX
--- config
    location /api/ { shared_map_api; }
    location /show {
        shared_map_key m $arg_k;
        add_header X-Value $shared_map_value;
        return 200 "ok\n";
    }
--- request eval
["PUT /api/m?key=inj\nbad\r\nX-Injected: 1\r\n\r\n100%", "GET /show?k=inj"]
--- error_code eval
[201, 200]
--- response_headers eval
["", "X-Value: bad%0D%0AX-Injected: 1%0D%0A%0D%0A100%25\n!X-Injected"]
--- response_body eval
["", "ok\n"]



=== TEST 19: pipelined requests are each answered in full, an empty body included
(Test::Nginx splits pipelined responses by Content-Length, which a 204 and
a HEAD do not give, so those come last here and in TEST 10.)
--- pipelined_requests eval
["PUT /api/m?key=piped\none", "PUT /api/m?key=piped2\n", "GET /api/m?key=piped", "GET /api/m?key=piped2",
 "POST /api/m?key=n_piped&incr=3", "GET /api/m?key=nothing", "DELETE /api/m?key=piped"]
--- error_code eval
[201, 201, 200, 200, 200, 404, 204]
--- response_body eval
["", "", "one", "", "3", "key not found\n", ""]
