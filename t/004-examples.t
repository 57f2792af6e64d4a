# Every example configuration in nginx-conf/ passes `nginx -t` (no network
# needed): its files under /etc/nginx/ are made in the test's prefix.
use strict;
use warnings;
use lib 't/lib';
use OAuth2Test;
use Test::More;
use File::Path qw(make_path);

my $root = servroot();
make_path("$root/ex/etc/oauth2", "$root/ex/etc/tls", "$root/ex/conf");
make_tls();
system("cp '$root/tls.crt' '$root/ex/etc/tls/app.crt' && cp '$root/tls.key' '$root/ex/etc/tls/app.key'") == 0 or die "cp: $!";
write_cookie_keys('ex/etc/oauth2/cookie.keys', 'e');
write_cookie_keys('ex/conf/cookie.keys', 'e');
open my $s, '>', "$root/ex/etc/oauth2/client-secret" or die $!;
print $s "example-secret\n";
close $s;
open my $rp, '>', "$root/ex/etc/oauth2/redis-password" or die $!;
print $rp "example-redis-password\n";
close $rp;

my @files = sort glob('nginx-conf/*.conf nginx-conf/*/*.conf');
ok(@files >= 3, 'the examples are there');
for my $file (@files) {
    open my $f, '<', $file or die "$file: $!";
    my $text = do { local $/; <$f> };
    close $f;
    $text =~ s{/etc/nginx/}{$root/ex/etc/}g;
    $text =~ s{/var/log/nginx/}{$root/ex/logs/}g;
    my ($ok, $out) = nginx_t_text($text);
    ok($ok, "nginx -t $file") or diag($out);
}
done_testing();
