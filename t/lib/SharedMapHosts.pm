package SharedMapHosts;
# Several nginx hosts and a Redis server for the t/41x files that replicate
# through Redis (t/410 keeps its own copy of these): a redis-server on
# 16384 + port mod 1000, hosts on port + 10 + N, each with its own prefix
# under t/servroot-NAME.
use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use Time::HiRes qw(time sleep);
use File::Path qw(make_path remove_tree);
use Cwd qw(getcwd);

our @EXPORT = qw(redis_bin setup redis_port start_redis kill_redis stop_redis cont_redis redis_cli
    host_port url start_host stop_host master_pid get put del post sync_of converge values_of error_log
    make_certs nginx_t http_get);

our ($port, $rport, $root, $redis_pid);
# What redis-cli needs besides the port: TLS, an ACL user (start_redis's `cli`).
our @cli_opts;
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);

sub redis_bin { my $b = `command -v redis-server 2>/dev/null`; chomp $b; $b }

sub setup {
    my ($name) = @_;
    $port  = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    $rport = 16384 + $port % 1000;
    $root  = ($ENV{TEST_NGINX_SERVROOT} || getcwd() . '/t/servroot') . "-$name";
    remove_tree($root);
    make_path("$root/redis");
    return $root;
}

sub redis_port { $rport }

sub redis_cli { my $out = `redis-cli -p $rport @cli_opts @_ 2>&1`; chomp $out; $out }

# A CA, a second CA that signed nothing of Redis's, and Redis's certificate
# for redis.test (and localhost), under ROOT/tls; returns that directory.
sub make_certs {
    my $dir = "$root/tls";
    make_path($dir);
    my $ssl = sub { system("openssl @_ >/dev/null 2>&1") == 0 or die "openssl @_ failed" };
    for my $ca (qw(ca other-ca)) {
        $ssl->("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=$ca -keyout $dir/$ca.key -out $dir/$ca.pem");
    }
    $ssl->("req -newkey rsa:2048 -nodes -subj /CN=redis.test -keyout $dir/redis.key -out $dir/redis.csr");
    open my $ext, '>', "$dir/san.ext" or die $!;
    print $ext "subjectAltName=DNS:redis.test,DNS:localhost\n";
    close $ext;
    $ssl->("x509 -req -in $dir/redis.csr -CA $dir/ca.pem -CAkey $dir/ca.key -CAcreateserial -days 2"
        . " -extfile $dir/san.ext -out $dir/redis.pem");
    # nginx's workers (nobody, when the tests run as root) read the CA files.
    chmod 0755, $root, $dir;
    chmod 0644, glob("$dir/*.pem");
    return $dir;
}

# Starts redis-server on the Redis port. Options: tls => make_certs's
# directory (TLS only: no cleartext port), args => [more of redis-server's
# arguments], cli => [redis-cli's options to reach it].
sub start_redis {
    my %opt = @_;
    my $bin = redis_bin();
    my @listen = ('--port', $rport);
    if (my $tls = $opt{tls}) {
        @listen = ('--port', 0, '--tls-port', $rport, '--tls-cert-file', "$tls/redis.pem",
            '--tls-key-file', "$tls/redis.key", '--tls-ca-cert-file', "$tls/ca.pem", '--tls-auth-clients', 'no');
    }
    @cli_opts = @{ $opt{cli} // [] };
    push @cli_opts, '--tls', '--cacert', "$opt{tls}/ca.pem", '--sni', 'redis.test' if $opt{tls};
    $redis_pid = fork() // die "fork: $!";
    if ($redis_pid == 0) {
        exec $bin, @listen, '--bind', '127.0.0.1', '--dir', "$root/redis",
            '--save', '', '--appendonly', 'no', '--logfile', "$root/redis/redis.log", @{ $opt{args} // [] };
        exit 1;
    }
    for (1 .. 100) { return if redis_cli('ping') eq 'PONG'; sleep 0.05 }
    die "redis-server did not start";
}
sub kill_redis { kill 'KILL', $redis_pid; waitpid $redis_pid, 0 }
sub stop_redis { kill 'STOP', $redis_pid }
sub cont_redis { kill 'CONT', $redis_pid }

sub host_port { $port + 10 + $_[0] }
sub url { my ($h, $path) = @_; "http://127.0.0.1:" . host_port($h) . $path }

# Starts host $h with $http_lines in http {} (maps, shared_map_redis),
# $server_lines added to its server {} (which has /pid and /maps/), and
# $main_lines (a stream {} block) before http {}.
sub start_host {
    my ($h, $http_lines, $server_lines, $main_lines) = @_;
    $server_lines //= '';
    $main_lines //= '';
    my $dir = "$root/h$h";
    make_path("$dir/logs");
    my $hp = host_port($h);
    my $module = $ENV{TEST_NGINX_MODULE} or die "TEST_NGINX_MODULE is not set";
    my $nginx = $ENV{TEST_NGINX_BINARY} or die "TEST_NGINX_BINARY is not set";
    open my $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh <<"_EOC_";
load_module $module;
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
$main_lines
http {
    access_log off;
    client_body_temp_path $dir/client_body_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    scgi_temp_path $dir/scgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
$http_lines
    server {
        listen 127.0.0.1:$hp;
        location = /pid { return 200 "\$pid"; }
        location /maps/ { shared_map_api; }
$server_lines
    }
}
_EOC_
    close $fh;
    system($nginx, '-p', "$dir/", '-e', 'logs/error.log', '-c', "$dir/nginx.conf") == 0
        or die "nginx h$h did not start";
    for (1 .. 100) { return if $http->get(url($h, '/pid'))->{success}; sleep 0.05 }
    die "nginx h$h does not answer";
}

# `nginx -t` of a configuration with $http_lines in http {}: its output.
sub nginx_t {
    my ($http_lines) = @_;
    my $dir = "$root/conftest";
    make_path("$dir/logs");
    my $module = $ENV{TEST_NGINX_MODULE} or die "TEST_NGINX_MODULE is not set";
    my $nginx = $ENV{TEST_NGINX_BINARY} or die "TEST_NGINX_BINARY is not set";
    open my $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh "load_module $module;\nevents {}\nhttp {\n$http_lines\n}\n";
    close $fh;
    my $out = `$nginx -t -p $dir/ -e logs/error.log -c $dir/nginx.conf 2>&1`;
    return $out;
}

sub http_get { my ($h, $path) = @_; my $r = $http->get(url($h, $path)); "$r->{status} $r->{content}" }

sub master_pid { open my $fh, '<', "$root/h$_[0]/logs/nginx.pid" or return; my $p = <$fh>; chomp $p; $p }

sub stop_host {
    my ($h) = @_;
    my $pid = master_pid($h) or return;
    kill 'QUIT', $pid;
    for (1 .. 200) { last unless kill 0, $pid; sleep 0.05 }
    unlink "$root/h$h/logs/nginx.pid";
}

sub error_log { my ($h) = @_; local (@ARGV, $/) = ("$root/h$h/logs/error.log"); <> // '' }

sub get { my ($h, $map, $key) = @_; my $r = $http->get(url($h, "/maps/$map?key=$key")); $r->{status} == 200 ? $r->{content} : undef }
sub put { my ($h, $map, $key, $v, $q) = @_; $http->put(url($h, "/maps/$map?key=$key" . ($q // '')), { content => $v })->{status} }
sub del { my ($h, $map, $key) = @_; $http->delete(url($h, "/maps/$map" . (defined $key ? "?key=$key" : '')))->{status} }
sub post { my ($h, $map, $key, $q) = @_; my $r = $http->post(url($h, "/maps/$map?key=$key$q")); "$r->{status} $r->{content}" }

# The "sync" object of a map's listing, as text.
sub sync_of {
    my ($h, $map) = @_;
    my $j = $http->get(url($h, "/maps/$map?limit=0"))->{content} // '';
    $j =~ /"sync":(\{[^}]*\})/ ? $1 : $j;
}

# Waits until every host in @$hosts gives $want for $map/$key (undef: absent);
# returns the seconds it took, or undef after $limit seconds.
sub converge {
    my ($map, $key, $want, $limit, $hosts) = @_;
    my $t0 = time;
    while (time - $t0 < $limit) {
        my $all = 1;
        for my $h (@$hosts) {
            my $v = get($h, $map, $key);
            $all = 0, last unless (defined $v ? $v : "\0none") eq (defined $want ? $want : "\0none");
        }
        return time - $t0 if $all;
        sleep 0.01;
    }
    return undef;
}

sub values_of { my ($map, $key, $hosts) = @_; join ',', map { get($_, $map, $key) // 'none' } @$hosts }

1;
