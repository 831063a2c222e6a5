# The API in front of browsers (issue 20, finding 1): a write that a browser
# sent for another site gets 403 and changes nothing; a browser's request for a
# Host that is not an address, localhost or a server_name gets 403, reads too
# (DNS rebinding). A browser's request is one with Origin, Sec-Fetch-Site or a
# User-Agent starting with Mozilla/. Clients without them (curl) are served as
# before. The headers below are those Chromium sends for each case
# (t/browser/attacker.test.mjs drives a real one).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

our $P = $ENV{TEST_NGINX_SERVER_PORT};
share_with_init(qw(call new_sid is));

use_api_config(config => <<'_EOC_');
    server_name api.test *.wild.test .dot.test ~^re\d+\.test$ www.tail.*;
    location /api/ { shared_map_api; }
    location = /m { shared_map_api m; }
    shared_map_session h;
    location = /session { shared_map_session_api write; }
    location = /my-session { shared_map_session_api; }
_EOC_

run_tests();

__DATA__

=== TEST 1: a form POSTed by a page of another site (Origin: http://evil.example) is refused and changes nothing
--- request eval
["POST /api/m?key=0.0.0.0/0&incr=1", "POST /m?key=k&incr=1", "GET /api/m?key=0.0.0.0/0", "GET /m?key=k"]
--- more_headers eval
["Host: 127.0.0.1:$::P\nOrigin: http://evil.example\nContent-Type: application/x-www-form-urlencoded",
 "Host: 127.0.0.1:$::P\nOrigin: http://evil.example\nSec-Fetch-Site: cross-site\nSec-Fetch-Mode: navigate\nContent-Type: application/x-www-form-urlencoded",
 "", ""]
--- request_body eval
["a=1", "a=1", "", ""]
--- error_code eval
[403, 403, 404, 404]
--- response_body eval
["cross-site write refused: origin \"http://evil.example\"\n", "cross-site write refused: Sec-Fetch-Site \"cross-site\"\n",
 "key not found\n", "key not found\n"]



=== TEST 2: ... a text/plain form, a no-cors fetch, sendBeacon, PUT and DELETE: refused; nothing changed
--- request eval
["PUT /api/m?key=t\nkept", "POST /api/m?key=t&incr=1", "POST /api/m?key=n&incr=5", "POST /api/m?key=n&incr=5",
 "PUT /api/m?key=t\nchanged", "DELETE /api/m?key=t", "DELETE /api/m", "GET /api/m?key=t", "GET /api/m?key=n"]
--- more_headers eval
["",
 "Host: 127.0.0.1:$::P\nOrigin: http://evil.example:8000\nContent-Type: text/plain",
 "Host: 127.0.0.1:$::P\nOrigin: http://evil.example\nSec-Fetch-Site: cross-site\nSec-Fetch-Mode: no-cors\nContent-Type: text/plain;charset=UTF-8",
 "Host: 127.0.0.1:$::P\nSec-Fetch-Site: cross-site\nSec-Fetch-Mode: no-cors",
 "Host: 127.0.0.1:$::P\nOrigin: https://127.0.0.1:$::P",
 "Host: 127.0.0.1:$::P\nOrigin: http://127.0.0.1:1",
 "Host: 127.0.0.1:$::P\nSec-Fetch-Site: same-site",
 "", ""]
--- error_code eval
[201, 403, 403, 403, 403, 403, 403, 200, 404]
--- response_body eval
["", "cross-site write refused: origin \"http://evil.example:8000\"\n",
 "cross-site write refused: Sec-Fetch-Site \"cross-site\"\n", "cross-site write refused: Sec-Fetch-Site \"cross-site\"\n",
 "cross-site write refused: origin \"https://127.0.0.1:$::P\"\n", "cross-site write refused: origin \"http://127.0.0.1:1\"\n",
 "cross-site write refused: Sec-Fetch-Site \"same-site\"\n", "kept", "key not found\n"]



=== TEST 3: ... Origin "null" (a sandboxed page, a data: URL) is not an origin of ours
--- request eval
["POST /api/m?key=n&incr=1", "PUT /session\nuser=admin", "GET /api/m?key=n"]
--- more_headers eval
["Host: 127.0.0.1:$::P\nOrigin: null", "Host: 127.0.0.1:$::P\nOrigin: null", ""]
--- error_code eval
[403, 403, 404]
--- response_body eval
["cross-site write refused: origin \"null\"\n", "cross-site write refused: origin \"null\"\n", "key not found\n"]



=== TEST 4: ... same-origin writes, as the dashboard makes them, are served
--- request eval
["PUT /api/m?key=d&type=long\n0", "POST /api/m?key=d&incr=2", "DELETE /api/m?key=d", "POST /m?key=e&incr=1",
 "PUT /api/m?key=f\nv", "POST /api/m?key=f2&incr=3"]
--- more_headers eval
["Host: 127.0.0.1:$::P\nOrigin: http://127.0.0.1:$::P\nSec-Fetch-Site: same-origin\nSec-Fetch-Mode: cors",
 "Host: 127.0.0.1:$::P\nOrigin: http://127.0.0.1:$::P\nSec-Fetch-Site: same-origin",
 "Host: 127.0.0.1:$::P\nOrigin: http://127.0.0.1:$::P\nSec-Fetch-Site: same-origin",
 "Host: localhost:$::P\nOrigin: http://LOCALHOST:$::P",
 "Host: api.test\nOrigin: http://api.test:80\nSec-Fetch-Site: same-origin",
 "Host: [::1]:$::P\nOrigin: http://[::1]:$::P\nSec-Fetch-Site: same-origin"]
--- error_code eval
[201, 200, 204, 200, 201, 200]
--- response_body eval
["", "2", "", "1", "", "3"]



=== TEST 5: ... clients without Origin and Sec-Fetch-Site (curl) are served, whatever their Host
--- request eval
["PUT /api/m?key=c\nx", "POST /api/m?key=c2&incr=1", "DELETE /api/m?key=c", "GET /api/", "PUT /session\nuser=bob"]
--- more_headers eval
["Host: rebind.attacker.test:$::P", "Host: rebind.attacker.test", "", "Host: anything.example", "Host: rebind.attacker.test"]
--- error_code eval
[201, 200, 204, 200, 201]



=== TEST 6: ... DNS rebinding: a browser's request for a Host that is not ours is refused, reads too
--- request eval
["PUT /api/m?key=r\nx", "GET /api/", "GET /api/m", "GET /api/m?key=f", "GET /api/?format=html", "GET /session",
 "GET /api/m?key=r"]
--- more_headers eval
["Host: rebind.attacker.test:$::P\nOrigin: http://rebind.attacker.test:$::P\nSec-Fetch-Site: same-origin",
 "Host: rebind.attacker.test:$::P\nSec-Fetch-Site: same-origin",
 "Host: rebind.attacker.test:$::P\nSec-Fetch-Site: same-origin",
 "Host: rebind.attacker.test:$::P\nOrigin: http://rebind.attacker.test:$::P",
 "Host: rebind.attacker.test:$::P\nSec-Fetch-Site: none",
 "Host: rebind.attacker.test:$::P\nSec-Fetch-Site: same-origin",
 ""]
--- error_code eval
[403, 403, 403, 403, 403, 403, 404]
--- response_body eval
["host \"rebind.attacker.test\" is not a name of this server\n", "host \"rebind.attacker.test\" is not a name of this server\n",
 "host \"rebind.attacker.test\" is not a name of this server\n", "host \"rebind.attacker.test\" is not a name of this server\n",
 "host \"rebind.attacker.test\" is not a name of this server\n", "host \"rebind.attacker.test\" is not a name of this server\n",
 "key not found\n"]



=== TEST 7: ... a rebinding page's same-origin GET on plain HTTP carries neither header: a browser's User-Agent is enough
--- request eval
["GET /api/", "GET /api/m?key=f", "GET /api/", "GET /api/", "GET /api/"]
--- more_headers eval
["Host: rebind.attacker.test:$::P\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36",
 "Host: rebind.attacker.test:$::P\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
 "Host: 127.0.0.1:$::P\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
 "Host: rebind.attacker.test:$::P\nUser-Agent: curl/8.14.1",
 "Host: rebind.attacker.test:$::P\nUser-Agent: Prometheus/3.0.0"]
--- error_code eval
[403, 403, 200, 200, 200]



=== TEST 8: ... names of the server: exact, leading wildcards and regular expressions count; trailing wildcards do not
--- request eval
["GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f",
 "GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f", "GET /api/m?key=f"]
--- more_headers eval
[map { "Host: $_\nSec-Fetch-Site: same-origin" }
 qw(api.test API.TEST. a.wild.test a.b.wild.test dot.test x.dot.test re42.test wild.test re42.test.attacker.test
    www.tail.com localhost.attacker.test)]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403]



=== TEST 9: ... a cross-site navigation to the dashboard or a listing is a read: served
--- request eval
["GET /api/", "GET /api/m?format=prometheus"]
--- more_headers eval
["Host: 127.0.0.1:$::P\nSec-Fetch-Site: cross-site\nSec-Fetch-Mode: navigate\nAccept: text/html",
 "Host: localhost\nSec-Fetch-Site: cross-site\nOrigin: http://evil.example"]
--- error_code eval
[200, 200]
--- response_headers_like eval
["Content-Type: text/html; charset=utf-8", "Content-Type: text/plain; version=0.0.4"]



=== TEST 10: the session API with write: a cross-site PUT or DELETE is refused and the session is unchanged
--- init
use HTTP::Tiny;
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $put = call(PUT => '/session', undef, 'user=alice');
is $put->{status}, 201, 'a trusted PUT creates the session';
my $sid = new_sid($put) or die 'no session';
my $ua = HTTP::Tiny->new(keep_alive => 0);
my %evil = (Cookie => "SMSESSION=$sid", Origin => 'http://evil.example', 'Sec-Fetch-Site' => 'cross-site');
my $r = $ua->request(PUT => "$base/session", { headers => \%evil, content => 'user=admin' });
is $r->{status}, 403, 'cross-site PUT: 403';
is $r->{content}, "cross-site write refused: Sec-Fetch-Site \"cross-site\"\n", 'with its reason';
$r = $ua->request(DELETE => "$base/session", { headers => \%evil });
is $r->{status}, 403, 'cross-site DELETE: 403';
is call(GET => '/session', $sid)->{content}, 'user=alice', 'the session is unchanged';
--- request
GET /session
--- error_code: 404



=== TEST 11: ... the read-only session API is every client's own: not guarded (a rebinding page only has its own domain's cookies)
--- request eval
["GET /my-session", "GET /my-session"]
--- more_headers eval
["Host: www.site.example\nSec-Fetch-Site: same-origin", "Host: www.site.example\nOrigin: http://evil.example\nSec-Fetch-Site: cross-site"]
--- error_code eval
[404, 404]
--- response_body eval
["no session\n", "no session\n"]



=== TEST 12: a refusal is logged as nginx logs a request its access rules forbid
--- request
PUT /api/m?key=x
v
--- more_headers eval
"Host: 127.0.0.1:$::P\nOrigin: http://evil.example"
--- error_code: 403
--- error_log
[error]
shared map: cross-site write refused: origin "http://evil.example"



=== TEST 13: ... and a foreign host
--- request
GET /api/
--- more_headers
Host: rebind.attacker.test
Sec-Fetch-Site: same-origin
--- error_code: 403
--- error_log
shared map: host "rebind.attacker.test" is not a name of this server
