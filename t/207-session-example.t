# The shipped example (nginx-conf/session-example.conf with session-app.py),
# tried as a hostile client would: no write API is reachable, no id a client
# brings is ever adopted or made to carry someone else's login, and nobody
# becomes admin without the admin's password.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use IO::Socket::INET;
use HTTP::Tiny;
use POSIX ();

no_shuffle();
workers(2);
master_on();

my $root = "$FindBin::Bin/..";

# A free port for the application.
$ENV{TEST_NGINX_APP_PORT} ||= do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die "port: $!";
    my $p = $s->sockport;
    close $s;
    $p;
};

# The example's http block, as shipped, on the test's ports.
sub example_http_config {
    open my $in, '<', "$root/nginx-conf/session-example.conf" or die "example: $!";
    my $conf = do { local $/; <$in> };
    $conf =~ /^http \{\n(.*)^\}/ms or die 'no http block in the example';
    my $http = $1;
    $http =~ s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:\$TEST_NGINX_SERVER_PORT;/ or die 'no listen';
    $http =~ s/server 127\.0\.0\.1:8081;/server 127.0.0.1:\$TEST_NGINX_APP_PORT;/ or die 'no upstream';
    return $http;
}

# Starts the example application with the given users; returns its pid.
sub start_app {
    my $users = shift;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $ENV{SESSION_APP_USERS} = $users;
        open STDERR, '>', '/dev/null';
        { exec 'python3', "$root/nginx-conf/session-app.py", $ENV{TEST_NGINX_APP_PORT}, 2 };
        POSIX::_exit(127);
    }
    for (1 .. 100) {
        return $pid if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_APP_PORT});
        select undef, undef, undef, 0.05;
    }
    die 'the application did not start';
}

sub stop_app {
    my $pid = shift;
    kill TERM => $pid;
    waitpid $pid, 0;
}

# One request as a client; %h: cookie (a session id), headers, form (a body).
sub client {
    my ($method, $path, %h) = @_;
    my %headers = %{ $h{headers} // {} };
    $headers{Cookie} = "SMSESSION=$h{cookie}" if $h{cookie};
    my %opt = (headers => \%headers);
    if (defined $h{form}) {
        $opt{content} = $h{form};
        $headers{'Content-Type'} = 'application/x-www-form-urlencoded';
    }
    return HTTP::Tiny->new(keep_alive => 0, max_redirect => 0)
        ->request($method, "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}$path", \%opt);
}

sub hostile_client {
    my $admin_password = join '', map { ('a' .. 'z')[rand 26] } 1 .. 20;
    my $app = start_app("mallory:mallory-pw:user,root:$admin_password:admin");
    my $ok = eval {
        # No write API: the session API is read-only.
        for my $m (qw(PUT POST DELETE)) {
            my $r = client($m => '/session', form => 'user=root; role=admin');
            is $r->{status}, 405, "$m /session: 405";
            is set_cookie($r), '', "$m /session: no session";
        }

        # A forged X-Session header is replaced by nginx; a made-up id is ignored.
        like client(GET => '/admin', headers => { 'X-Session' => 'user=root; role=admin' })->{content},
            qr/Administrators only/, 'a forged X-Session header counts for nothing';
        like client(GET => '/admin', cookie => '0123456789abcdef0123456789abcdef')->{content},
            qr/Administrators only/, 'a made-up session id counts for nothing';

        # Wrong passwords and injected names create nothing.
        for my $form ("user=root&password=guess", "user=root%0D%0AX-Shared-Map-Session:%20role=admin&password=x") {
            my $r = client(POST => '/login', form => $form);
            is $r->{status}, 403, "login $form: 403";
            is set_cookie($r), '', 'and no session';
        }

        # Mallory logs in with her own password; she is not admin.
        my $r = client(POST => '/login', form => 'user=mallory&password=mallory-pw');
        is $r->{status}, 303, 'mallory logs in';
        my $mallory = new_sid($r) or die 'no cookie for mallory';
        is $r->{headers}{'cache-control'}, 'private, no-store', 'the login response is kept out of caches';
        like client(GET => '/', cookie => $mallory)->{content}, qr/Hello, mallory/, 'mallory is logged in';
        like client(GET => '/admin', cookie => $mallory)->{content}, qr/Administrators only/, 'but not admin';
        is client(PUT => '/session', cookie => $mallory, form => 'user=root; role=admin')->{status}, 405,
            'nor can she rewrite her session';

        # Fixation: mallory plants her id in the admin's browser before the admin logs in.
        $r = client(POST => '/login', cookie => $mallory, form => "user=root&password=$admin_password");
        my $root_sid = new_sid($r) or die 'no cookie for root';
        isnt $root_sid, $mallory, "the admin's login gets a new id";
        like client(GET => '/admin', cookie => $root_sid)->{content}, qr/Admin area, root/, 'the admin is admin';
        like client(GET => '/admin', cookie => $mallory)->{content}, qr/Administrators only/,
            'the planted id never carries the admin login';
        like client(GET => '/', cookie => $mallory)->{content}, qr/Not logged in/, 'and names no session at all';
        is client(GET => '/session', cookie => $mallory)->{status}, 404, 'not even through the API';
        1;
    };
    stop_app($app);
    die $@ if !$ok;
}

share_with_init(qw(hostile_client start_app stop_app client set_cookie new_sid is isnt like));

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(main_config => 'load_module $TEST_NGINX_MODULE;');
    $block->set_value(http_config => example_http_config());
    $block->set_value(config => '');
});

run_tests();

__DATA__

=== TEST 1: the example, tried as a hostile client, yields no one else's session and no admin
--- init
hostile_client();
--- request
GET /session
--- error_code: 404
--- no_error_log
[error]
