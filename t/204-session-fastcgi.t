# The session headers work with the other upstream modules too: FastCGI here,
# with a small FastCGI responder written in Perl.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use IO::Socket::UNIX;
use POSIX ();

no_shuffle();
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

# A FastCGI responder on a unix socket, in a child process, for $n requests:
# /login writes the session, /logout ends it, anything else echoes the session
# nginx passed in the HTTP_X_SESSION parameter.
sub fastcgi_responder {
    my ($path, $n) = @_;
    unlink $path;
    my $srv = IO::Socket::UNIX->new(Local => $path, Listen => 8) or die "listen $path: $!";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $srv;
        return $pid;
    }
    alarm 20;
    for (1 .. $n) {
        my $c = $srv->accept or last;
        my ($params, $id) = ('', 1);
        while (1) {
            read($c, my $h, 8) == 8 or last;
            my ($ver, $type, $rid, $len, $pad) = unpack 'CCnnC', $h;
            my $body = "";
            read($c, $body, $len + $pad) if $len + $pad;
            $id = $rid;
            $params .= substr($body, 0, $len) if $type == 4;
            last if $type == 5 && $len == 0;    # the end of FCGI_STDIN
        }
        my %p;
        while (length $params) {
            my @l;
            for (1 .. 2) {
                my $b = ord $params;
                if ($b & 0x80) { push @l, unpack('N', $params) & 0x7fffffff; substr($params, 0, 4, '') }
                else           { push @l, $b; substr($params, 0, 1, '') }
            }
            my $k = substr($params, 0, $l[0], '');
            $p{$k} = substr($params, 0, $l[1], '');
        }
        my $uri = $p{REQUEST_URI} // '';
        my $out = $uri =~ /login/  ? "Status: 200 OK\r\nX-Shared-Map-Session: user=fcgi\r\n\r\nwelcome\n"
                : $uri =~ /logout/ ? "Status: 200 OK\r\nX-Shared-Map-Session-Destroy: 1\r\n\r\nbye\n"
                :                    "Status: 200 OK\r\n\r\ngot: " . ($p{HTTP_X_SESSION} // '') . "\n";
        print $c pack('CCnnCC', 1, 6, $id, length $out, 0, 0), $out,
                 pack('CCnnCC', 1, 6, $id, 0, 0, 0),
                 pack('CCnnCC', 1, 3, $id, 8, 0, 0), pack('NCx3', 0, 0);
        close $c;
    }
    # Not exit: Test::Nginx's END block would run in this child too and stop
    # nginx, maybe before it sent the response of the request just served.
    POSIX::_exit(0);
}

share_with_init(qw(fastcgi_responder call is like ok));

run_tests();

__DATA__

=== TEST 1: fastcgi_pass: the responder creates, reads and ends the session
--- main_config
    load_module $TEST_NGINX_MODULE;
--- http_config
    shared_map sessions hashmap?space=1m;
--- config
    shared_map_session sessions;
    location /fcgi/ {
        fastcgi_param REQUEST_URI $request_uri;
        fastcgi_param HTTP_X_SESSION $shared_map_session;
        fastcgi_pass unix:$TEST_NGINX_HTML_DIR/fcgi.sock;
    }
--- init
my $pid = fastcgi_responder("$ENV{TEST_NGINX_HTML_DIR}/fcgi.sock", 5);
my $r = call(GET => '/fcgi/login');
is $r->{content}, "welcome\n", 'login';
my ($sid) = ($r->{headers}{'set-cookie'} // '') =~ /^SMSESSION=([0-9a-f]{32}); Path=\/; HttpOnly; SameSite=Lax$/;
ok $sid, 'the session cookie';
ok !exists $r->{headers}{'x-shared-map-session'}, 'the header is hidden';
is call(GET => '/fcgi/page', $sid)->{content}, "got: user=fcgi\n", 'the responder gets the session';
$r = call(GET => '/fcgi/logout', $sid);
like $r->{headers}{'set-cookie'} // '', qr/^SMSESSION=; Max-Age=0;/, 'logout expires the cookie';
ok !exists $r->{headers}{'x-shared-map-session-destroy'}, 'the header is hidden';
is call(GET => '/fcgi/page', $sid)->{content}, "got: \n", 'the session is gone';
--- request
GET /fcgi/
--- response_body
got: 

--- no_error_log
[error]
